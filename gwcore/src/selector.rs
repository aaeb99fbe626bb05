//! Label selectors (`matchLabels` AND `matchExpressions`).

use std::collections::BTreeMap;

use crate::model::LabelSelector;

/// Why a selector cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// An operator other than In, NotIn, Exists, DoesNotExist.
    #[error("unknown operator {0:?}; expected In, NotIn, Exists or DoesNotExist")]
    UnknownOperator(String),
    /// In/NotIn without values, or Exists/DoesNotExist with values.
    #[error("operator {0} {1}")]
    BadValues(String, &'static str),
}

/// Checks that a selector is well formed.
pub fn check(sel: &LabelSelector) -> Result<(), SelectorError> {
    for e in &sel.match_expressions {
        match e.operator.as_str() {
            "In" | "NotIn" if e.values.is_empty() => {
                return Err(SelectorError::BadValues(e.operator.clone(), "needs values"));
            }
            "Exists" | "DoesNotExist" if !e.values.is_empty() => {
                return Err(SelectorError::BadValues(
                    e.operator.clone(),
                    "takes no values",
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => return Err(SelectorError::UnknownOperator(other.to_string())),
        }
    }
    Ok(())
}

/// Whether `labels` satisfy the selector. An empty selector matches
/// everything; a malformed one matches nothing.
pub fn matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if check(sel).is_err() {
        return false;
    }
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && sel.match_expressions.iter().all(|e| {
            let got = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => got.is_some_and(|v| e.values.contains(v)),
                "NotIn" => got.is_none_or(|v| !e.values.contains(v)),
                "Exists" => got.is_some(),
                "DoesNotExist" => got.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let sel = LabelSelector {
            match_labels: labels(&[("a", "1")]),
            match_expressions: vec![LabelSelectorRequirement {
                key: "b".into(),
                operator: "NotIn".into(),
                values: vec!["x".into()],
            }],
        };
        assert!(matches(&sel, &labels(&[("a", "1")])));
        assert!(matches(&sel, &labels(&[("a", "1"), ("b", "y")])));
        assert!(!matches(&sel, &labels(&[("a", "1"), ("b", "x")])));
        assert!(!matches(&sel, &labels(&[("b", "y")])));
    }

    #[test]
    fn exists_and_does_not_exist() {
        let req = |op: &str| LabelSelector {
            match_expressions: vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: op.into(),
                values: vec![],
            }],
            ..Default::default()
        };
        assert!(matches(&req("Exists"), &labels(&[("k", "")])));
        assert!(!matches(&req("Exists"), &labels(&[])));
        assert!(matches(&req("DoesNotExist"), &labels(&[])));
        assert!(!matches(&req("Bogus"), &labels(&[])));
    }

    #[test]
    fn empty_selector_matches_all() {
        assert!(matches(&LabelSelector::default(), &labels(&[("x", "y")])));
    }
}

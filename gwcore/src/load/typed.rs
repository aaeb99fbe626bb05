//! Reading a YAML document straight into its kind's type, without building
//! a [`serde_json::Value`] first.
//!
//! The loader's reference path builds the document's value
//! ([`super::budget::ValueSeed`], counting it against the budgets), reads
//! `kind` and `apiVersion` from it, then deserializes the kind's type from
//! the value (`serde_path_to_error`, for the path of a field in error). On
//! a large manifest the value is built, walked and freed for nothing: a
//! fifth of what is allocated. This path reads the same events into the
//! type directly, and is taken only where it gives what the reference path
//! gives:
//!
//! - [`De`] hands the type what `serde_json`'s `Value` deserializer would:
//!   scalars as YAML resolves them (`80` is a number, not the string
//!   `"80"`), only the kinds of value each request of the type accepts
//!   (a string to `deserialize_str`, a mapping or a sequence to
//!   `deserialize_struct`), mapping keys read as strings, non-negative
//!   integers as `u64`, unknown fields walked (not skipped) so that they
//!   are counted and their keys checked as the value would have been;
//! - the budgets of [`super::budget::ValueSeed`] (values and depth) are
//!   counted in the same way;
//! - the top-level `kind` and `apiVersion` are taken as the value would
//!   hold them (the last of duplicate keys, a string), and must be those
//!   the text was read as.
//!
//! Whatever this path cannot vouch for, it does not decide: any error
//! (a wrong type, a budget crossed, a duplicate field, a 128-bit or
//! non-finite number, a tag) and any document it does not read (not block
//! style at the top, a `List`, a kind not built in) returns `None`, and the
//! caller reads the document by the reference path, which gives the
//! diagnostic. The loader's tests, run on both paths, are the oracle.

use std::cell::{Cell, RefCell};

use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};

use super::Limits;
use super::budget::ValueSeed;
use crate::extension::Extensions;
use crate::model::{Kind, ListenerSetKind, Object};

/// A document read by this path: its object, of `kind`, written with
/// `apiVersion`.
pub(crate) struct Typed {
    pub(crate) object: Object,
    pub(crate) kind: Kind,
    pub(crate) api_version: String,
}

/// Reads `doc` as an object of a built-in kind served at the apiVersion it
/// is written with, or `None` when the reference path must decide (see the
/// module docs).
pub(crate) fn read(doc: &str, limits: &Limits, ext: &Extensions) -> Option<Typed> {
    let (kind_str, api_version) = (peek(doc, "kind")?, peek(doc, "apiVersion")?);
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    if ext.kind(group, kind_str).is_some() {
        return None;
    }
    let kind = Kind::parse(kind_str).filter(|k| k.reads(kind_str, api_version))?;
    let walk = Walk {
        max_depth: limits.max_depth,
        values_left: Cell::new(ValueSeed::values_budget(doc.len(), limits)),
        kind: RefCell::new(None),
        api_version: RefCell::new(None),
    };
    let object = match kind {
        Kind::GatewayClass => Object::GatewayClass(de(doc, &walk)?),
        Kind::Gateway => Object::Gateway(de(doc, &walk)?),
        Kind::ListenerSet => {
            let mut ls: Box<crate::model::ListenerSet> = de(doc, &walk)?;
            ls.served_as = ListenerSetKind::parse(kind_str).unwrap_or_default();
            Object::ListenerSet(ls)
        }
        Kind::HttpRoute => Object::HttpRoute(de(doc, &walk)?),
        Kind::GrpcRoute => Object::GrpcRoute(de(doc, &walk)?),
        Kind::TlsRoute => Object::TlsRoute(de(doc, &walk)?),
        Kind::TcpRoute => Object::TcpRoute(de(doc, &walk)?),
        Kind::UdpRoute => Object::UdpRoute(de(doc, &walk)?),
        Kind::ReferenceGrant => Object::ReferenceGrant(de(doc, &walk)?),
        Kind::BackendTlsPolicy => Object::BackendTlsPolicy(de(doc, &walk)?),
        Kind::Namespace => Object::Namespace(de(doc, &walk)?),
        Kind::Service => Object::Service(de(doc, &walk)?),
        Kind::EndpointSlice => Object::EndpointSlice(de(doc, &walk)?),
        Kind::Secret => Object::Secret(de(doc, &walk)?),
        Kind::ConfigMap => Object::ConfigMap(de(doc, &walk)?),
        Kind::Extension(_) => return None,
    };
    // The value's `kind` and `apiVersion` are the ones the text was taken
    // to say (and it was a mapping: else none was seen).
    let (kind_read, api_version_read) = (walk.kind.into_inner()?, walk.api_version.into_inner()?);
    if kind_read != kind_str || api_version_read != api_version {
        return None;
    }
    Some(Typed {
        // Sequences come without a length, so their vectors grew by
        // doubling (room for four items kept for one); a value's come with
        // theirs. The copy holds each vector at its length, as the value
        // path does (at 50 000 routes, 180 MB less kept).
        object: object.clone(),
        kind,
        api_version: api_version_read,
    })
}

/// The plain or quoted value of a top-level `key:` line of block-style
/// `doc` (the first such line): what the document says its kind or
/// apiVersion is, to be confirmed by what the parser reads.
pub(crate) fn peek<'d>(doc: &'d str, key: &str) -> Option<&'d str> {
    for line in doc.lines() {
        let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) else {
            continue;
        };
        let value = rest.split(" #").next().unwrap_or("").trim();
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        return (!unquoted.is_empty()).then_some(unquoted);
    }
    None
}

fn de<T: de::DeserializeOwned>(doc: &str, walk: &Walk) -> Option<T> {
    T::deserialize(De {
        inner: serde_norway::Deserializer::from_str(doc),
        walk,
        depth: 0,
        capture: None,
    })
    .ok()
}

/// What the walk of one document shares: the budgets left, and the
/// top-level `kind` and `apiVersion` as read.
struct Walk {
    max_depth: usize,
    values_left: Cell<u64>,
    kind: RefCell<Option<String>>,
    api_version: RefCell<Option<String>>,
}

/// A top-level field whose value is kept.
#[derive(Clone, Copy)]
enum Top {
    Kind,
    ApiVersion,
}

impl Walk {
    /// Counts one value as [`ValueSeed`] does.
    fn count<E: de::Error>(&self) -> Result<(), E> {
        let left = self.values_left.get();
        if left == 0 {
            return Err(E::custom("value budget spent"));
        }
        self.values_left.set(left - 1);
        Ok(())
    }

    /// Keeps the value of a top-level `kind` or `apiVersion`: a string, or
    /// none (another type, as the value's `as_str` would say).
    fn keep(&self, top: Option<Top>, value: Option<&str>) {
        let slot = match top {
            Some(Top::Kind) => &self.kind,
            Some(Top::ApiVersion) => &self.api_version,
            None => return,
        };
        *slot.borrow_mut() = value.map(str::to_owned);
    }
}

/// What a request of the type accepts, as `serde_json::Value`'s
/// deserializer does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// `deserialize_any`: everything.
    Any,
    Bool,
    /// The integer and float requests.
    Number,
    /// `str`, `string`, `char`, `identifier`.
    Str,
    /// `bytes`, `byte_buf`: a string or a sequence.
    Bytes,
    /// `unit`, `unit_struct`: null.
    Unit,
    /// `seq`, `tuple`, `tuple_struct`.
    Seq,
    Map,
    /// `struct`: a mapping or a sequence.
    Struct,
    /// `enum`: a string (a unit variant); a mapping is left to the
    /// reference path.
    Enum,
}

/// A deserializer over the YAML one, for the type of the document (or of
/// a value in it) at nesting `depth`.
struct De<'w, D> {
    inner: D,
    walk: &'w Walk,
    depth: usize,
    capture: Option<Top>,
}

impl<'de, 'w, D: Deserializer<'de>> De<'w, D> {
    fn filter<V: Visitor<'de>>(self, accept: Accept, visitor: V) -> Result<V::Value, D::Error> {
        self.inner.deserialize_any(Filter {
            visitor,
            accept,
            walk: self.walk,
            depth: self.depth,
            capture: self.capture,
        })
    }
}

macro_rules! accept {
    ($accept:ident: $($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.filter(Accept::$accept, visitor)
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for De<'_, D> {
    type Error = D::Error;

    accept!(Any: deserialize_any);
    accept!(Bool: deserialize_bool);
    accept!(Number: deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64);
    accept!(Str: deserialize_char deserialize_str deserialize_string deserialize_identifier);
    accept!(Bytes: deserialize_bytes deserialize_byte_buf);
    accept!(Unit: deserialize_unit);
    accept!(Seq: deserialize_seq);
    accept!(Map: deserialize_map);

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // The YAML deserializer tells null (`~`, `null`, nothing) as the
        // value would be `Null`.
        self.inner.deserialize_option(Optional {
            visitor,
            walk: self.walk,
            depth: self.depth,
            capture: self.capture,
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.filter(Accept::Unit, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.filter(Accept::Seq, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.filter(Accept::Seq, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.filter(Accept::Struct, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.filter(Accept::Enum, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        // The value would have been built whole (counted, its keys read as
        // strings) before the field was found to be unknown: walk it.
        self.filter(Accept::Any, IgnoredAny)?;
        visitor.visit_unit()
    }
}

/// The visitor of one value: counts it, keeps it when it is the top-level
/// `kind` or `apiVersion`, and hands it to the type's visitor when the
/// request accepts it.
struct Filter<'w, V> {
    visitor: V,
    accept: Accept,
    walk: &'w Walk,
    depth: usize,
    capture: Option<Top>,
}

impl<V> Filter<'_, V> {
    fn start<E: de::Error>(&self, value: Option<&str>) -> Result<(), E> {
        self.walk.count()?;
        self.walk.keep(self.capture, value);
        Ok(())
    }

    fn accepts(&self, kinds: &[Accept]) -> bool {
        self.accept == Accept::Any || kinds.contains(&self.accept)
    }

    /// A collection one level down: refused at the depth budget, as
    /// [`ValueSeed`] refuses it.
    fn enter<E: de::Error>(&self) -> Result<(), E> {
        if self.depth >= self.walk.max_depth {
            return Err(E::custom("nesting budget spent"));
        }
        Ok(())
    }
}

/// Refuses what the reference path decides (see the module docs).
fn leave<T, E: de::Error>(what: &str) -> Result<T, E> {
    Err(E::custom(format_args!("{what}: left to the value path")))
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Filter<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<V::Value, E> {
        self.start(None)?;
        if !self.accepts(&[Accept::Bool]) {
            return Err(E::invalid_type(Unexpected::Bool(v), &self.visitor));
        }
        self.visitor.visit_bool(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<V::Value, E> {
        // A value holds a non-negative integer as a u64.
        if let Ok(u) = u64::try_from(v) {
            return self.visit_u64(u);
        }
        self.start(None)?;
        if !self.accepts(&[Accept::Number]) {
            return Err(E::invalid_type(Unexpected::Signed(v), &self.visitor));
        }
        self.visitor.visit_i64(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<V::Value, E> {
        self.start(None)?;
        if !self.accepts(&[Accept::Number]) {
            return Err(E::invalid_type(Unexpected::Unsigned(v), &self.visitor));
        }
        self.visitor.visit_u64(v)
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<V::Value, E> {
        leave("a 128-bit integer")
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<V::Value, E> {
        leave("a 128-bit integer")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        if !v.is_finite() {
            // A value holds it as null.
            return leave("a float that is not finite");
        }
        self.start(None)?;
        if !self.accepts(&[Accept::Number]) {
            return Err(E::invalid_type(Unexpected::Float(v), &self.visitor));
        }
        self.visitor.visit_f64(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.start(Some(v))?;
        match self.accept {
            Accept::Any | Accept::Str | Accept::Bytes => self.visitor.visit_str(v),
            Accept::Enum => self.visitor.visit_enum(v.into_deserializer()),
            _ => Err(E::invalid_type(Unexpected::Str(v), &self.visitor)),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.start(Some(v))?;
        match self.accept {
            Accept::Any | Accept::Str | Accept::Bytes => self.visitor.visit_borrowed_str(v),
            Accept::Enum => self.visitor.visit_enum(v.into_deserializer()),
            _ => Err(E::invalid_type(Unexpected::Str(v), &self.visitor)),
        }
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.start(Some(&v))?;
        match self.accept {
            Accept::Any | Accept::Str | Accept::Bytes => self.visitor.visit_string(v),
            Accept::Enum => self.visitor.visit_enum(v.into_deserializer()),
            _ => Err(E::invalid_type(Unexpected::Str(&v), &self.visitor)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.start(None)?;
        if !self.accepts(&[Accept::Unit]) {
            return Err(E::invalid_type(Unexpected::Unit, &self.visitor));
        }
        self.visitor.visit_unit()
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        // Null, as `visit_unit`.
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        // Transparent, as in `ValueSeed`.
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.start(None)?;
        self.enter()?;
        if !self.accepts(&[Accept::Seq, Accept::Bytes, Accept::Struct]) {
            return Err(de::Error::invalid_type(Unexpected::Seq, &self.visitor));
        }
        self.visitor.visit_seq(Items {
            inner: seq,
            walk: self.walk,
            depth: self.depth + 1,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.start(None)?;
        self.enter()?;
        if !self.accepts(&[Accept::Map, Accept::Struct]) {
            return Err(de::Error::invalid_type(Unexpected::Map, &self.visitor));
        }
        self.visitor.visit_map(Entries {
            inner: map,
            walk: self.walk,
            depth: self.depth + 1,
            top: self.depth == 0,
            pending: None,
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, _: A) -> Result<V::Value, A::Error> {
        // A tagged node (`!Tag value`), which a value cannot hold.
        leave("a tagged value")
    }
}

/// The visitor of `deserialize_option`: null is `None` (and counts as a
/// value), anything else is read by the type's request.
struct Optional<'w, V> {
    visitor: V,
    walk: &'w Walk,
    depth: usize,
    capture: Option<Top>,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Optional<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.visitor.expecting(f)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.walk.count()?;
        self.walk.keep(self.capture, None);
        self.visitor.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(De {
            inner: d,
            walk: self.walk,
            depth: self.depth,
            capture: self.capture,
        })
    }
}

/// The items of a sequence, each read through [`De`].
struct Items<'w, A> {
    inner: A,
    walk: &'w Walk,
    depth: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Items<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.inner.next_element_seed(Seed {
            seed,
            walk: self.walk,
            depth: self.depth,
            capture: None,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// The entries of a mapping: keys read as strings (as a value's keys are),
/// values through [`De`]; `top` for the document's own mapping, whose
/// `kind` and `apiVersion` are kept.
struct Entries<'w, A> {
    inner: A,
    walk: &'w Walk,
    depth: usize,
    top: bool,
    pending: Option<Top>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Entries<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.inner.next_key::<String>()? else {
            return Ok(None);
        };
        self.pending = match key.as_str() {
            "kind" if self.top => Some(Top::Kind),
            "apiVersion" if self.top => Some(Top::ApiVersion),
            _ => None,
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            seed,
            walk: self.walk,
            depth: self.depth,
            capture: self.pending.take(),
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

/// A seed of the type, handed the YAML deserializer wrapped in [`De`].
struct Seed<'w, S> {
    seed: S,
    walk: &'w Walk,
    depth: usize,
    capture: Option<Top>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(De {
            inner: d,
            walk: self.walk,
            depth: self.depth,
            capture: self.capture,
        })
    }
}

#[cfg(test)]
mod tests;

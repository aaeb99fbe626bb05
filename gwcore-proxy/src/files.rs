//! Reading manifests from files and folders.

use std::path::{Path, PathBuf};

use gwcore::extension::Extensions;
use gwcore::load::{Diagnostic, Loaded, Severity, load_str_extended};

/// Whether a path names a manifest file gwcore reads (`.yaml`, `.yml`, `.json`).
pub fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// Lists the manifest files under `paths` (files as given, folders walked
/// recursively), sorted within each folder so the order never depends on the
/// file system.
pub fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, true, &mut out)?;
    }
    Ok(out)
}

fn walk(p: &Path, explicit: bool, out: &mut Vec<PathBuf>) -> Result<(), (PathBuf, std::io::Error)> {
    let meta = std::fs::metadata(p).map_err(|e| (p.to_path_buf(), e))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| (p.to_path_buf(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let hidden = e
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if !hidden {
                walk(&e, false, out)?;
            }
        }
    } else if explicit || is_manifest(p) {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Reads and loads every manifest under `paths`. A file that cannot be
/// read becomes an error diagnostic; everything else is still loaded.
///
/// Two more errors keep a broken input from passing for an empty one: a
/// folder given in `paths` that holds no manifest file (its files were
/// deleted), and a file larger than the loader's limit
/// ([`gwcore::load::Limits::max_source_bytes`]), which is refused before it
/// is read into memory.
pub fn read_manifests(paths: &[PathBuf]) -> Loaded {
    read_manifests_extended(paths, &Extensions::default())
}

/// [`read_manifests`], objects of the kinds `extensions` register included.
pub fn read_manifests_extended(paths: &[PathBuf], extensions: &Extensions) -> Loaded {
    let (files, mut diagnostics) = list_manifests(paths);
    let mut loaded = Loaded {
        diagnostics: std::mem::take(&mut diagnostics),
        ..Loaded::default()
    };
    for f in files {
        match read_manifest(&f, None) {
            Ok(text) => loaded.extend(load_str_extended(
                &f.display().to_string(),
                &text,
                gwcore::load::Limits::default(),
                extensions,
            )),
            Err(d) => loaded.diagnostics.push(*d),
        }
    }
    loaded
}

/// The manifest files under `paths` in reading order, and an error for
/// each path that cannot be listed or is a folder without manifests.
pub(crate) fn list_manifests(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    for p in paths {
        match manifest_files(std::slice::from_ref(p)) {
            Ok(f) if f.is_empty() => diagnostics.push(error(
                p,
                "no manifest file (.yaml, .yml, .json) in this folder".into(),
            )),
            Ok(f) => files.extend(f),
            Err((path, e)) => diagnostics.push(io_diagnostic(&path, &e)),
        }
    }
    (files, diagnostics)
}

/// Reads one manifest file as text; `len` is its length when already
/// known. A file over the loader's size limit is refused before it is
/// read, one that is not UTF-8 after. (The error is boxed: a diagnostic is
/// large, and reading succeeds far more often.)
pub(crate) fn read_manifest(f: &Path, len: Option<u64>) -> Result<String, Box<Diagnostic>> {
    let max = gwcore::load::Limits::default().max_source_bytes;
    let len = len.unwrap_or_else(|| std::fs::metadata(f).map_or(0, |m| m.len()));
    if usize::try_from(len).map_or(true, |l| l > max) {
        return Err(Box::new(error(
            f,
            format!("{len} bytes, larger than the limit of {max} bytes; nothing read from it"),
        )));
    }
    let bytes = std::fs::read(f).map_err(|e| Box::new(io_diagnostic(f, &e)))?;
    String::from_utf8(bytes)
        .map_err(|_| Box::new(error(f, "not UTF-8 text; nothing read from it".into())))
}

fn error(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        source: path.display().to_string(),
        document: 0,
        line: None,
        object: None,
        field: None,
        message,
    }
}

fn io_diagnostic(path: &Path, e: &std::io::Error) -> Diagnostic {
    error(path, format!("cannot read: {e}"))
}

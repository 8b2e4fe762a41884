//! Recipes that are a few lines: a config file may say `"extends": "attempt3"` (a preset:
//! `attempt1`–`attempt3`, `write-up1`–`write-up3`) or `"extends": "other.json"` (a file, relative
//! to the one that names it) and give only the fields that differ; objects merge field by field,
//! anything else replaces. A full config is a recipe that extends nothing. Overrides
//! (`key.path=value`) apply the same merge from a command line.
//!
//! ```
//! use under8k_train::{TrainConfig, recipe};
//!
//! let json = serde_json::json!({ "extends": "attempt1", "epochs": 3 });
//! let c = recipe::resolve(json, std::path::Path::new(".")).unwrap();
//! assert_eq!(c.epochs, 3);
//! assert_eq!(c.batch_size, TrainConfig::attempt(1).unwrap().batch_size);
//! ```

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::TrainConfig;

/// A recipe that does not resolve to a valid config.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not JSON, or not a config once resolved.
    #[error("{}: {why}", path.display())]
    Invalid {
        /// The file (or `-` for a command line).
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// `extends` names itself, directly or not.
    #[error("{}: `extends` goes round in a circle", path.display())]
    Circle {
        /// The file.
        path: PathBuf,
    },
    /// An override is not `key=value`.
    #[error("override `{0}`: expected KEY=VALUE (e.g. epochs=20 or schedule.max_lr=0.05)")]
    Override(String),
}

/// The preset an `extends` names, as JSON.
fn preset(name: &str) -> Option<TrainConfig> {
    let n: u8 = name
        .strip_prefix("attempt")
        .or_else(|| name.strip_prefix("write-up"))?
        .parse()
        .ok()?;
    match name.starts_with("attempt") {
        true => TrainConfig::attempt(n).ok(),
        false => TrainConfig::write_up(n).ok(),
    }
}

/// Merges `over` into `base`: objects field by field (recursively), anything else replaces.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The JSON a recipe resolves to (its `extends` chain merged), before it is read as a config.
fn resolve_value(mut v: Value, dir: &Path, seen: &mut Vec<PathBuf>) -> Result<Value, RecipeError> {
    let here = seen.last().cloned().unwrap_or_else(|| PathBuf::from("-"));
    let invalid = |why: String| RecipeError::Invalid {
        path: here.clone(),
        why,
    };
    let Some(obj) = v.as_object_mut() else {
        return Err(invalid("not a JSON object".into()));
    };
    let Some(ext) = obj.remove("extends") else {
        return Ok(v);
    };
    let Value::String(name) = ext else {
        return Err(invalid(
            "`extends` must be a preset's name or a file".into(),
        ));
    };
    let mut base = match preset(&name) {
        Some(c) => serde_json::to_value(c).expect("a config serialises"),
        None => {
            let path = dir.join(&name);
            if seen.contains(&path) {
                return Err(RecipeError::Circle { path });
            }
            if !path.exists() {
                return Err(invalid(format!(
                    "`extends`: `{name}` is neither a preset (attempt1–3, write-up1–3) nor a file ({})",
                    path.display()
                )));
            }
            seen.push(path.clone());
            let v = read_value(&path)?;
            let parent = path.parent().unwrap_or(Path::new("."));
            let resolved = resolve_value(v, parent, seen)?;
            seen.pop();
            resolved
        }
    };
    merge(&mut base, v);
    Ok(base)
}

fn read_value(path: &Path) -> Result<Value, RecipeError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecipeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| RecipeError::Invalid {
        path: path.to_path_buf(),
        why: format!("not JSON: {e}"),
    })
}

/// Resolves a recipe's JSON (its `extends` relative to `dir`) to a config, unvalidated.
pub fn resolve(v: Value, dir: &Path) -> Result<TrainConfig, RecipeError> {
    from_value(resolve_value(v, dir, &mut vec![])?, Path::new("-"))
}

fn from_value(v: Value, path: &Path) -> Result<TrainConfig, RecipeError> {
    serde_json::from_value(v).map_err(|e| RecipeError::Invalid {
        path: path.to_path_buf(),
        why: format!("not a training config: {e}"),
    })
}

/// Reads a recipe file (a full config, or one that `extends` another) with `overrides`
/// (`key.path=value`, the value JSON or else a string) applied after it resolves.
pub fn load(path: &Path, overrides: &[String]) -> Result<TrainConfig, RecipeError> {
    let v = read_value(path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut v = resolve_value(v, dir, &mut vec![path.to_path_buf()])?;
    apply(&mut v, overrides)?;
    from_value(v, path)
}

/// A preset with `overrides` applied.
pub fn preset_with(name: &str, overrides: &[String]) -> Result<TrainConfig, RecipeError> {
    let c = preset(name).ok_or_else(|| RecipeError::Invalid {
        path: PathBuf::from(name),
        why: "not a preset (attempt1–3, write-up1–3)".into(),
    })?;
    let mut v = serde_json::to_value(c).expect("a config serialises");
    apply(&mut v, overrides)?;
    from_value(v, Path::new(name))
}

/// Applies `key.path=value` overrides to a config's JSON.
pub fn apply(v: &mut Value, overrides: &[String]) -> Result<(), RecipeError> {
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| RecipeError::Override(o.clone()))?;
        let value: Value =
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
        let over = key.rsplit('.').fold(value, |inner, k| {
            Value::Object([(k.to_string(), inner)].into_iter().collect())
        });
        merge(v, over);
    }
    Ok(())
}

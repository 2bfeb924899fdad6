//! Layering: the defaults, the TOML file and the environment merged into one TOML value, then
//! deserialised into [`Settings`] (so each source can set any option, and an unknown one is an
//! error that names it).

use std::path::Path;

use anyhow::Context;

use super::{ENV_PREFIX, Settings};

impl Settings {
    /// Layers defaults, the optional TOML `file` and the environment `vars` (`TOKENMINT__A__B=v`
    /// sets `a.b`; `DATABASE_URL` sets `database.url`).
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let layer = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let layer: toml::Value = toml::from_str(&text)
                    .with_context(|| format!("invalid TOML in config file {}", path.display()))?;
                Some(layer)
            }
            None => None,
        };
        Self::from_layers(layer, vars)
    }

    /// [`Settings::load`] with the file's text given instead of its path (no file system access).
    pub fn from_toml(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let layer: toml::Value = toml::from_str(text).context("invalid TOML in config")?;
        Self::from_layers(Some(layer), vars)
    }

    /// Layers defaults, the parsed file `layer` and the environment `vars`.
    fn from_layers(
        layer: Option<toml::Value>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut merged = toml::Value::try_from(Settings::default()).context("default settings")?;
        if let Some(layer) = layer {
            merge(&mut merged, layer);
        }
        for (name, value) in vars {
            let path: Vec<String> = if name == "DATABASE_URL" {
                vec!["database".into(), "url".into()]
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                rest.split("__").map(|p| p.to_ascii_lowercase()).collect()
            } else {
                continue;
            };
            set_path(&mut merged, &path, env_value(&value))
                .with_context(|| format!("environment variable {name} does not name a setting"))?;
        }
        let settings: Settings = merged.try_into().context("invalid configuration")?;
        Ok(settings)
    }
}

/// Parses an environment value as a TOML value when it is one (numbers, booleans), else a string.
fn env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut table) => match table.remove("v") {
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Boolean(_) | toml::Value::Float(_)),
            ) => v,
            _ => toml::Value::String(raw.to_owned()),
        },
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn merge(base: &mut toml::Value, layer: toml::Value) {
    match (base, layer) {
        (toml::Value::Table(base), toml::Value::Table(layer)) => {
            for (k, v) in layer {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

fn set_path(root: &mut toml::Value, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| anyhow::anyhow!("empty setting name"))?;
    let mut node = root;
    for key in parents {
        let table = node
            .as_table_mut()
            .ok_or_else(|| anyhow::anyhow!("{key} is not a section"))?;
        node = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    let table = node
        .as_table_mut()
        .ok_or_else(|| anyhow::anyhow!("{last} is not inside a section"))?;
    table.insert(last.clone(), value);
    Ok(())
}

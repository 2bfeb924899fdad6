//! Layering with figment: the defaults, then the TOML file, then the environment, each able to
//! set any option. An unknown option or a value of the wrong type is an error that names the
//! option and where it came from (the file, or the environment variable).

use std::path::Path;

use anyhow::Context;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::{ENV_PREFIX, Settings};

impl Settings {
    /// Layers defaults, the optional TOML `file` and the environment `vars` (`TOKENMINT__A__B=v`
    /// sets `a.b`; `DATABASE_URL` sets `database.url`).
    pub fn load(
        file: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            // figment skips a missing file silently; a named one must exist.
            std::fs::metadata(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::extract(figment, vars)
    }

    /// [`Settings::load`] with the file's text given instead of its path (no file system access;
    /// the config fuzz target uses it).
    pub fn from_toml(
        text: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let figment = Figment::from(Serialized::defaults(Settings::default()));
        Self::extract(figment.merge(Toml::string(text)), vars)
    }

    /// Adds the environment on top of `figment` and reads the result.
    fn extract(
        figment: Figment,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let environment = EnvVars::from_vars(vars)?;
        // Lossy: an environment value is text, read as a number or a boolean where the option
        // is one ("500", "true", "on"), and as text where it is text ("2024" as an issuer).
        let settings = figment.merge(environment).extract_lossy::<Settings>();
        settings.context("invalid configuration")
    }
}

/// The settings named by environment variables, as a figment provider.
struct EnvVars {
    /// Each variable's setting path (`["server", "listen"]`), its name, and its value.
    settings: Vec<(Vec<String>, String, Value)>,
}

impl EnvVars {
    /// Keeps `TOKENMINT__…` and `DATABASE_URL`; ignores every other variable.
    fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let mut settings = Vec::new();
        for (name, raw) in vars {
            let path: Vec<String> = if name == "DATABASE_URL" {
                vec!["database".into(), "url".into()]
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                rest.split("__").map(str::to_ascii_lowercase).collect()
            } else {
                continue;
            };
            anyhow::ensure!(
                path.iter().all(|part| !part.is_empty()),
                "environment variable {name} does not name a setting"
            );
            settings.push((path, name, Value::from(raw)));
        }
        Ok(Self { settings })
    }
}

impl Provider for EnvVars {
    fn metadata(&self) -> Metadata {
        let names: Vec<(Vec<String>, String)> = self
            .settings
            .iter()
            .map(|(path, name, _)| (path.clone(), name.clone()))
            .collect();
        // Errors then say "for key "server.listen (TOKENMINT__SERVER__LISTEN)"".
        Metadata::named("environment variable").interpolater(move |_, keys| {
            let dotted = keys.join(".");
            match names.iter().find(|(path, _)| path.iter().eq(keys.iter())) {
                Some((_, name)) => format!("{dotted} ({name})"),
                None => dotted,
            }
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (path, name, value) in &self.settings {
            insert(&mut root, path, value.clone())
                .map_err(|why| figment::Error::from(format!("{name}: {why}")))?;
        }
        Ok(Profile::Default.collect(root))
    }
}

/// Sets `path` in `root`, making the sections on the way.
fn insert(root: &mut Dict, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, sections)) = path.split_last() else {
        return Err("empty setting name".into());
    };
    let mut table = root;
    for section in sections {
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| Value::from(Dict::new()));
        table = match entry {
            Value::Dict(_, dict) => dict,
            _ => return Err(format!("{section} is not a section")),
        };
    }
    table.insert(last.clone(), value);
    Ok(())
}

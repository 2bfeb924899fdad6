//! Loading, layering and validating settings.

use std::path::Path;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_validate() {
    let s = Settings::load(None, vec![]).unwrap();
    s.validate().unwrap();
    assert_eq!(s.server.listen, "127.0.0.1:50051");
    assert_eq!(s.tokens.leeway_secs, 5);
}

#[test]
fn a_zero_background_interval_is_refused() {
    for var in [
        "TOKENMINT__BACKGROUND__CHANGE_POLL_INTERVAL_MS",
        "TOKENMINT__BACKGROUND__LAST_USED_FLUSH_INTERVAL_MS",
    ] {
        let s = Settings::load(None, vars(&[(var, "0")])).unwrap();
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("must be positive"), "{var}: {err}");
    }
}

#[test]
fn request_caps_have_defaults_and_must_be_positive() {
    let s = Settings::load(None, vars(&[("TOKENMINT__REQUESTS__MAX_SCOPES", "7")])).unwrap();
    assert_eq!(s.requests.max_scopes, 7);
    assert_eq!(s.requests.max_ip_entries, 100);
    assert_eq!(s.requests.max_mask_paths, 20);
    let s = Settings::load(None, vars(&[("TOKENMINT__REQUESTS__MAX_IP_ENTRIES", "0")])).unwrap();
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("requests.max_ip_entries"), "{err}");
}

#[test]
fn file_then_env_override() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "environment = \"production\"\n[tokens]\nleeway_secs = 9\nissuer = \"a\"\n",
    )
    .unwrap();
    let s = Settings::load(
        Some(&file),
        vars(&[
            ("TOKENMINT__TOKENS__ISSUER", "b"),
            ("DATABASE_URL", "postgres://x"),
            ("OTHER", "1"),
        ]),
    )
    .unwrap();
    assert_eq!(s.environment, Environment::Production);
    assert_eq!(s.tokens.leeway_secs, 9);
    assert_eq!(s.tokens.issuer, "b");
    assert_eq!(s.database_url(), "postgres://x");
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("master key"), "{err}");
}

#[test]
fn the_example_configuration_is_a_valid_production_server_configuration() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/tokenmint.example.toml");
    let key = "ab".repeat(32);
    let s = Settings::load(
        Some(&example),
        vars(&[("TOKENMINT__KEYS__MASTER_KEY", key.as_str())]),
    )
    .unwrap();
    assert_eq!(s.environment, Environment::Production);
    assert!(s.server.tls.is_some());
    s.validate_server().unwrap();
}

#[test]
fn the_kubernetes_configmap_holds_a_valid_production_server_configuration() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml"),
    )
    .unwrap();
    // The block scalar under `tokenmint.toml: |`, indented four spaces.
    let toml: String = manifest
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("tokenmint.toml: |"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.get(4..).unwrap_or("")))
        .collect();
    assert!(toml.contains("[server]"), "found the embedded file: {toml}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokenmint.toml");
    std::fs::write(&file, toml).unwrap();
    let s = Settings::load(Some(&file), vec![]).unwrap();
    assert_eq!(s.environment, Environment::Production);
    assert!(s.server.metrics_listen.is_some());
    s.validate_server().unwrap();
}

#[test]
fn production_servers_need_tls_or_an_explicit_plaintext_allowance() {
    let key = "ab".repeat(32);
    let production = [
        ("TOKENMINT__ENVIRONMENT", "production"),
        ("TOKENMINT__KEYS__MASTER_KEY", key.as_str()),
    ];
    let s = Settings::load(None, vars(&production)).unwrap();
    s.validate().expect("commands other than serve need no TLS");
    let error = s.validate_server().unwrap_err().to_string();
    assert!(error.contains("production requires TLS"), "{error}");
    let mut allowed = production.to_vec();
    allowed.push(("TOKENMINT__SERVER__ALLOW_PLAINTEXT", "true"));
    let s = Settings::load(None, vars(&allowed)).unwrap();
    s.validate_server().unwrap();
    let mut with_tls = production.to_vec();
    with_tls.push(("TOKENMINT__SERVER__TLS__CERT_FILE", "/tls/cert.pem"));
    with_tls.push(("TOKENMINT__SERVER__TLS__KEY_FILE", "/tls/key.pem"));
    let s = Settings::load(None, vars(&with_tls)).unwrap();
    let tls = s
        .server
        .tls
        .as_ref()
        .expect("nested TLS settings from the environment");
    assert_eq!(tls.reload_interval_secs, 10);
    s.validate_server().unwrap();
}

#[test]
fn unknown_settings_and_bad_values_are_refused() {
    assert!(Settings::load(None, vars(&[("TOKENMINT__NOPE", "1")])).is_err());
    let s = Settings::load(None, vars(&[("TOKENMINT__SERVER__LISTEN", "nowhere")])).unwrap();
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .contains("server.listen")
    );
}

#[test]
fn secrets_do_not_print() {
    let s = Settings::load(None, vars(&[("TOKENMINT__KEYS__MASTER_KEY", "00ff")])).unwrap();
    assert!(!format!("{s:?}").contains("00ff"));
    assert!(!toml::to_string(&s).unwrap().contains("00ff"));
}

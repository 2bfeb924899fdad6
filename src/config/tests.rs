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
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:50051");
    assert_eq!(s.tokens.leeway_secs, 5);
}

#[test]
fn a_zero_background_interval_is_refused() {
    for var in [
        "TOKENMINT__BACKGROUND__CHANGE_POLL_INTERVAL_MS",
        "TOKENMINT__BACKGROUND__LAST_USED_FLUSH_INTERVAL_MS",
    ] {
        let err = format!(
            "{:#}",
            Settings::load(None, vars(&[(var, "0")])).unwrap_err()
        );
        assert!(err.contains("nonzero"), "{var}: {err}");
        assert!(err.contains(var), "the error names the variable: {err}");
    }
}

#[test]
fn request_caps_have_defaults_and_must_be_positive() {
    let s = Settings::load(None, vars(&[("TOKENMINT__REQUESTS__MAX_SCOPES", "7")])).unwrap();
    assert_eq!(s.requests.max_scopes.get(), 7);
    assert_eq!(s.requests.max_ip_entries.get(), 100);
    assert_eq!(s.requests.max_mask_paths.get(), 20);
    let zero = Settings::load(None, vars(&[("TOKENMINT__REQUESTS__MAX_IP_ENTRIES", "0")]));
    let err = format!("{:#}", zero.unwrap_err());
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
        (
            "TOKENMINT__STATUS_LIST__BASE_URI",
            "https://tokens.example/statuslists",
        ),
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
    assert_eq!(tls.reload_interval_secs.get(), 10);
    s.validate_server().unwrap();
}

#[test]
fn unknown_settings_and_bad_values_are_refused_naming_the_option_and_its_source() {
    let err = format!(
        "{:#}",
        Settings::load(None, vars(&[("TOKENMINT__NOPE", "1")])).unwrap_err()
    );
    assert!(err.contains("nope"), "{err}");
    let listen = vars(&[("TOKENMINT__SERVER__LISTEN", "nowhere")]);
    let err = format!("{:#}", Settings::load(None, listen).unwrap_err());
    assert!(err.contains("server.listen"), "{err}");
    assert!(err.contains("TOKENMINT__SERVER__LISTEN"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[server]\nmax_concurrent_streams = 0\n").unwrap();
    let err = format!("{:#}", Settings::load(Some(&file), vec![]).unwrap_err());
    assert!(err.contains("server.max_concurrent_streams"), "{err}");
    assert!(err.contains("c.toml"), "the error names the file: {err}");

    let missing = dir.path().join("missing.toml");
    let err = format!("{:#}", Settings::load(Some(&missing), vec![]).unwrap_err());
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn an_environment_value_that_looks_like_a_number_still_sets_a_text_option() {
    let s = Settings::load(None, vars(&[("TOKENMINT__TOKENS__ISSUER", "2024")])).unwrap();
    assert_eq!(s.tokens.issuer, "2024");
    let s = Settings::load(None, vars(&[("TOKENMINT__KEYS__MASTER_KEY", "1234")])).unwrap();
    assert_eq!(s.keys.master_key.as_ref().map(Secret::expose), Some("1234"));
}

#[test]
fn secrets_do_not_print() {
    let s = Settings::load(None, vars(&[("TOKENMINT__KEYS__MASTER_KEY", "00ff")])).unwrap();
    assert!(!format!("{s:?}").contains("00ff"));
    assert!(!toml::to_string(&s).unwrap().contains("00ff"));
}

#[test]
fn production_needs_a_status_list_base_uri_and_lists_have_sane_shapes() {
    let key = "ab".repeat(32);
    let production = [
        ("TOKENMINT__ENVIRONMENT", "production"),
        ("TOKENMINT__KEYS__MASTER_KEY", key.as_str()),
    ];
    let error = Settings::load(None, vars(&production))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(error.contains("status_list.base_uri"), "{error}");
    let mut with_base = production.to_vec();
    with_base.push((
        "TOKENMINT__STATUS_LIST__BASE_URI",
        "https://tokens.example/statuslists",
    ));
    Settings::load(None, vars(&with_base))
        .unwrap()
        .validate()
        .unwrap();
    let mut plain = production.to_vec();
    plain.push((
        "TOKENMINT__STATUS_LIST__BASE_URI",
        "http://tokens.example/lists",
    ));
    let error = Settings::load(None, vars(&plain))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(error.contains("https status_list.base_uri"), "{error}");
    plain.push(("TOKENMINT__SERVER__ALLOW_PLAINTEXT", "true"));
    Settings::load(None, vars(&plain))
        .unwrap()
        .validate()
        .unwrap();
    let refused = [
        (
            "TOKENMINT__STATUS_LIST__BASE_URI",
            "https://tokens.example/lists/",
        ),
        (
            "TOKENMINT__STATUS_LIST__BASE_URI",
            "ftp://tokens.example/lists",
        ),
        ("TOKENMINT__STATUS_LIST__BASE_URI", "https:///lists"),
        (
            "TOKENMINT__STATUS_LIST__BASE_URI",
            "https://tokens.example/lists?a=1",
        ),
        ("TOKENMINT__STATUS_LIST__SIZE", "1000"),
        ("TOKENMINT__STATUS_LIST__SIZE", "512"),
        ("TOKENMINT__STATUS_LIST__SIZE", "2097152"),
        ("TOKENMINT__STATUS_LIST__BLOCK", "3"),
        ("TOKENMINT__STATUS_LIST__BLOCK", "262144"),
        ("TOKENMINT__STATUS_LIST__TTL_SECS", "3600"),
        ("TOKENMINT__STATUS_LIST__EXP_SECS", "172800"),
        ("TOKENMINT__STATUS_LIST__RENDER_CACHE_MS", "61000"),
        (
            "TOKENMINT__STATUS_LIST__BASE_URI",
            "https://user:pw@tokens.example/lists",
        ),
        ("TOKENMINT__STATUS_LIST__BASE_URI", "https://:443/lists"),
        (
            "TOKENMINT__STATUS_LIST__BASE_URI",
            "https://tökens.example/lists",
        ),
    ];
    for (name, value) in refused {
        let error = Settings::load(None, vars(&[(name, value)]))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("status_list."), "{name}={value}: {error}");
    }
}

#[test]
fn test_mode_derives_status_list_uris_from_the_bound_address() {
    let mut s = Settings::default();
    let loopback = |addr: &str| s.status_list_base_uri(addr.parse().unwrap());
    assert_eq!(
        loopback("0.0.0.0:7000"),
        "http://127.0.0.1:7000/statuslists"
    );
    assert_eq!(loopback("[::]:7000"), "http://[::1]:7000/statuslists");
    assert_eq!(
        loopback("10.1.2.3:7000"),
        "http://10.1.2.3:7000/statuslists"
    );
    s.status_list.base_uri = Some("https://t.example/sl".into());
    assert_eq!(
        s.status_list_base_uri("0.0.0.0:1".parse().unwrap()),
        "https://t.example/sl"
    );
}

#[test]
fn change_streams_get_at_most_half_the_request_slots_and_a_bounded_heartbeat() {
    let defaults = Settings::load(None, vec![]).unwrap();
    assert_eq!(
        defaults.change_stream_cap(),
        256,
        "max_streams when slots allow"
    );
    assert_eq!(defaults.changes.stalled_client_ms.get(), 30_000);
    let few_slots = Settings::load(
        None,
        vars(&[("TOKENMINT__SERVER__MAX_IN_FLIGHT_REQUESTS", "100")]),
    )
    .unwrap();
    few_slots.validate().unwrap();
    assert_eq!(
        few_slots.change_stream_cap(),
        50,
        "half the in-flight slots"
    );
    let one_slot = Settings::load(
        None,
        vars(&[("TOKENMINT__SERVER__MAX_IN_FLIGHT_REQUESTS", "1")]),
    )
    .unwrap();
    assert_eq!(one_slot.change_stream_cap(), 1, "never 0");

    let slow = Settings::load(None, vars(&[("TOKENMINT__CHANGES__HEARTBEAT_MS", "10001")]));
    let err = format!("{:#}", slow.unwrap().validate().unwrap_err());
    assert!(err.contains("changes.heartbeat_ms"), "{err}");
    let max = Settings::load(None, vars(&[("TOKENMINT__CHANGES__HEARTBEAT_MS", "10000")]));
    max.unwrap().validate().unwrap();
    let short = Settings::load(
        None,
        vars(&[("TOKENMINT__CHANGES__LOG_RETENTION_SECS", "59")]),
    );
    let err = format!("{:#}", short.unwrap().validate().unwrap_err());
    assert!(err.contains("changes.log_retention_secs"), "{err}");
}

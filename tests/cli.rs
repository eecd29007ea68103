//! The command line as a user meets it: config check/show, bad input, and `serve` answering
//! `/metrics`.

mod support;

use support::carevoice::{Server, run};
use support::http_get;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// No panic, no backtrace: just `error: ...` lines.
fn assert_clean_failure(out: &std::process::Output) -> String {
    assert!(!out.status.success());
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
    err
}

#[test]
fn config_check_defaults_and_show_masks_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["config", "check"], dir.path(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "config ok");

    let out = run(
        &["config", "show"],
        dir.path(),
        &[("CAREVOICE_STORE__URL", "postgres://cv:hunter2@db/cv")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("postgres://cv:***@db/cv"), "{shown}");
    assert!(!shown.contains("hunter2"));
    assert!(shown.contains("port = 8080"), "{shown}");
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("carevoice.toml"),
        "[admin]\nport = \"abc\"\n",
    )
    .unwrap();
    let out = run(&["config", "check"], dir.path(), &[]);
    let err = assert_clean_failure(&out);
    assert_eq!(
        err.trim(),
        "error: admin.port: expected an integer 1-65535, got \"abc\""
    );

    let out = run(
        &["config", "check"],
        dir.path(),
        &[
            ("CAREVOICE_ADMIN__PORT", "8081"),
            ("CAREVOICE_LOG__FORMAT", "xml"),
        ],
    );
    let err = assert_clean_failure(&out);
    assert!(err.contains("log.format: unknown variant `xml`"), "{err}");
    assert!(err.contains("(from CAREVOICE_LOG__FORMAT)"), "{err}");

    std::fs::write(dir.path().join("carevoice.toml"), "[admin\nport = 1\n").unwrap();
    let err = assert_clean_failure(&run(&["config", "check"], dir.path(), &[]));
    assert!(err.starts_with("error: carevoice.toml:1:"), "{err}");
}

#[test]
fn missing_explicit_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = assert_clean_failure(&run(
        &["--config", "nope.toml", "config", "check"],
        dir.path(),
        &[],
    ));
    assert!(
        err.starts_with("error: nope.toml: cannot read config file:"),
        "{err}"
    );
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["serve", "--frobnicate"], dir.path(), &[]);
    let err = assert_clean_failure(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.starts_with("error: unexpected argument '--frobnicate'"),
        "{err}"
    );
}

#[test]
fn unwritable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A path under a regular file cannot be a directory, whoever we run as (root included).
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let bad = dir.path().join("file/data");
    let out = run(
        &["serve"],
        dir.path(),
        &[
            ("CAREVOICE_SERVER__DATA_DIR", bad.to_str().unwrap()),
            ("CAREVOICE_ADMIN__PORT", &support::free_port().to_string()),
        ],
    );
    let err = assert_clean_failure(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: data dir {}: cannot create:",
            bad.display()
        )),
        "{err}"
    );
}

#[test]
fn unreachable_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let out = run(
        &["serve"],
        dir.path(),
        &[
            (
                "CAREVOICE_STORE__URL",
                &format!("postgres://cv:pw@127.0.0.1:{port}/cv"),
            ),
            ("CAREVOICE_STORE__CONNECT_TIMEOUT_SECS", "2"),
            ("CAREVOICE_ADMIN__PORT", &support::free_port().to_string()),
        ],
    );
    let err = assert_clean_failure(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!(
            "error: cannot connect to postgres://cv:***@127.0.0.1:{port}/cv"
        )),
        "{err}"
    );
}

#[test]
fn admin_port_in_use_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(
        &["serve"],
        dir.path(),
        &[
            ("CAREVOICE_ADMIN__PORT", &port),
            ("CAREVOICE_SERVER__DATA_DIR", "data"),
        ],
    );
    let err = assert_clean_failure(&out);
    assert!(
        err.lines().last().unwrap_or_default().starts_with(&format!(
            "error: admin.port: cannot listen on 127.0.0.1:{port}:"
        )),
        "{err}"
    );
}

#[test]
fn serve_answers_metrics_and_stops_on_sigterm() {
    let mut server = Server::start("[log]\nformat = \"json\"\n");
    let (status, body) = http_get(&server.url("/metrics")).expect("metrics answer");
    assert_eq!(status, 200);
    assert!(body.contains("carevoice_build_info{"), "{body}");
    assert!(body.contains("store_engine=\"sqlite\""), "{body}");
    assert!(body.contains("carevoice_uptime_seconds"), "{body}");
    assert!(server.dir.path().join("data/carevoice.db").exists());

    server.child.signal("TERM");
    let status = server
        .child
        .wait_exit(std::time::Duration::from_secs(15))
        .expect("server stops on SIGTERM");
    assert!(status.success(), "{status}");
    // JSON logs: every line parses, and the shutdown was logged.
    let log = std::fs::read_to_string(&server.child.log).unwrap();
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(log.contains("shutting down"), "{log}");
}

#[test]
fn readme_config_table_matches_the_code() {
    let readme = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    let start = "<!-- config-table:start (generated by `carevoice config docs`) -->\n";
    let end = "<!-- config-table:end -->";
    let from = readme
        .find(start)
        .expect("README has the config table start marker")
        + start.len();
    let to = readme
        .find(end)
        .expect("README has the config table end marker");
    assert_eq!(
        &readme[from..to],
        carevoice::config::docs_markdown(),
        "README's configuration table is stale: replace it with the output of `carevoice config docs`"
    );
}

#[test]
fn models_verify_reports_missing_model_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["models", "verify"],
        dir.path(),
        &[("CAREVOICE_MODELS__DIR", dir.path().to_str().unwrap())],
    );
    let err = assert_clean_failure(&out);
    assert!(
        err.contains("run `carevoice models install silero-vad`"),
        "{err}"
    );
}

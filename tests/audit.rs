//! The audit log and encryption at rest, through the real binary on SQLite and on a real
//! PostgreSQL: tampering at the database level (sqlite3 / psql) is caught and named, a kill -9
//! during concurrent writes loses no committed record, two processes on one PostgreSQL form one
//! chain, key files are checked, rotation, prune (crypto-shredding) and export work.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::carevoice::{bin, run};
use support::postgres::Postgres;

/// One installation: a config file in a temp dir, SQLite or a PostgreSQL database.
struct Site {
    dir: tempfile::TempDir,
    config: PathBuf,
    pg: Option<(String, u16, String)>,
}

impl Site {
    fn new(pg: Option<(&Postgres, &str)>, extra: &str) -> Site {
        let dir = tempfile::Builder::new()
            .prefix("carevoice-audit-")
            .tempdir()
            .unwrap();
        let mut text = format!(
            "[server]\ndata_dir = \"{}\"\n\n[audit]\ncheckpoint_every_records = 1000\n{extra}\n",
            dir.path().join("data").display()
        );
        let pg = pg.map(|(pg, db)| {
            let url = pg.create_database(db);
            text.push_str(&format!("\n[store]\nurl = \"{url}\"\n"));
            (url, pg.port, db.to_string())
        });
        let config = dir.path().join("carevoice.toml");
        std::fs::write(&config, text).unwrap();
        Site { dir, config, pg }
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("data").join("master.key")
    }

    fn db_file(&self) -> PathBuf {
        self.dir.path().join("data").join("carevoice.db")
    }

    fn cv(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["--config", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&all, self.dir.path(), &[])
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cv(args);
        assert!(
            out.status.success(),
            "carevoice {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// Runs SQL at the database level, with the engine's own client.
    fn sql(&self, sql: &str) -> String {
        match &self.pg {
            Some((url, _, _)) => support::run_ok(
                "psql",
                Command::new(support::program("psql")).arg(url).args([
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-At",
                    "-c",
                    sql,
                ]),
            ),
            None => support::run_ok(
                "sqlite3",
                Command::new(support::program("sqlite3"))
                    .arg(self.db_file())
                    .arg(sql),
            ),
        }
    }

    fn verify_fails_at(&self, expected: i64) -> String {
        let out = self.cv(&["audit", "verify"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "verify passed a tampered log");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            err.contains(&format!("first bad sequence number: {expected}\n")),
            "expected seq {expected}:\n{err}"
        );
        err
    }

    fn export_jsonl(&self, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["audit", "export", "--format", "jsonl"];
        args.extend_from_slice(extra);
        let out = self.cv(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn engines() -> Vec<(&'static str, Option<Postgres>)> {
    vec![("sqlite", None), ("postgres", Some(Postgres::start()))]
}

/// A site with `n` call-turn records from 4 writers and a checkpoint at the head.
fn loaded(pg: Option<&Postgres>, db: &str, n: u64) -> Site {
    let site = Site::new(pg.map(|p| (p, db)), "");
    site.ok(&["keys", "init"]);
    site.ok(&[
        "audit",
        "load",
        "--records",
        &n.to_string(),
        "--writers",
        "4",
    ]);
    let v = site.ok(&["audit", "verify"]);
    assert!(v.contains(&format!("records 1..={n}")), "{v}");
    site
}

#[test]
fn tampering_at_the_database_level_is_caught_and_named() {
    // (name, SQL, first bad seq); 30 records, signed checkpoint at 30.
    let cases: &[(&str, &str, i64)] = &[
        (
            "change_a_byte",
            "UPDATE audit_log SET body = substr(body, 1, 10) || 'X' || substr(body, 12) WHERE seq = 7",
            7,
        ),
        ("delete_a_row", "DELETE FROM audit_log WHERE seq = 12", 12),
        (
            "swap_two_rows",
            "UPDATE audit_log SET seq = -1 WHERE seq = 15; UPDATE audit_log SET seq = 15 WHERE seq = 16; \
             UPDATE audit_log SET seq = 16 WHERE seq = -1",
            15,
        ),
        (
            "truncate_the_tail",
            "DELETE FROM audit_log WHERE seq > 25",
            26,
        ),
        (
            "truncate_the_tail_and_rewind_the_head",
            "DELETE FROM audit_log WHERE seq > 25; UPDATE audit_head SET seq = 25, \
             hash = (SELECT hash FROM audit_log WHERE seq = 25)",
            26,
        ),
        (
            "replace_a_ciphertext_with_another_rows",
            "UPDATE audit_log SET transcript = (SELECT transcript FROM audit_log WHERE seq = 3) WHERE seq = 9",
            9,
        ),
        (
            "insert_a_record",
            "INSERT INTO audit_log SELECT 31, ts_ms, kind, version, body, phi, transcript, hash, hash \
             FROM audit_log WHERE seq = 30",
            31,
        ),
        (
            "delete_the_prefix",
            "DELETE FROM audit_log WHERE seq <= 5",
            6,
        ),
    ];
    for (engine, pg) in engines() {
        for (i, (name, sql, bad)) in cases.iter().enumerate() {
            let site = loaded(pg.as_ref(), &format!("tamper{i}"), 30);
            site.sql(sql);
            let err = site.verify_fails_at(*bad);
            eprintln!("{engine} {name}: {}", err.lines().next().unwrap_or(""));
            if *name == "change_a_byte" {
                // A range away from the damage still verifies.
                let v = site.ok(&["audit", "verify", "--from", "10", "--to", "20"]);
                assert!(v.contains("records 10..=20"), "{v}");
            }
        }
        // A chain rewritten from a modified row onward (hashes recomputed) is caught by the
        // signed checkpoint at the head.
        let site = loaded(pg.as_ref(), "rewrite", 5);
        // Rewrite record 4 and recompute every hash after it, head included.
        site.sql("UPDATE audit_log SET body = replace(body, '\"intent\":\"book\"', '\"intent\":\"cancel\"') WHERE seq >= 4");
        let mut prev = site
            .sql("SELECT hash FROM audit_log WHERE seq = 3")
            .trim()
            .to_string();
        for seq in 4..=5 {
            let get = |col: &str| {
                site.sql(&format!("SELECT {col} FROM audit_log WHERE seq = {seq}"))
                    .trim_end_matches('\n')
                    .to_string()
            };
            let record = carevoice::audit::Record {
                seq,
                ts_ms: get("ts_ms").parse().unwrap(),
                kind: get("kind"),
                version: 1,
                body: get("body"),
                phi: Some(get("phi")),
                transcript: Some(get("transcript")),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            let hash = record.compute_hash();
            site.sql(&format!(
                "UPDATE audit_log SET hash = '{hash}', prev_hash = '{prev}' WHERE seq = {seq}"
            ));
            prev = hash;
        }
        site.sql(&format!("UPDATE audit_head SET hash = '{prev}'"));
        let err = site.verify_fails_at(5);
        assert!(err.contains("checkpoint"), "{err}");
        // A forged checkpoint signature is caught too.
        let site = loaded(pg.as_ref(), "forged_cp", 5);
        site.sql("UPDATE audit_checkpoints SET ts_ms = ts_ms + 1 WHERE seq = 5");
        let err = site.verify_fails_at(5);
        assert!(err.contains("signature"), "{err}");
    }
}

#[test]
fn kill_9_during_concurrent_writes_loses_no_committed_record() {
    for (engine, pg) in engines() {
        let site = Site::new(pg.as_ref().map(|p| (p, "crash")), "");
        site.ok(&["keys", "init"]);
        let mut child = Command::new(bin())
            .args(["--config", site.config.to_str().unwrap()])
            .args([
                "audit",
                "load",
                "--records",
                "1000000",
                "--writers",
                "16",
                "--print-seqs",
            ])
            .current_dir(site.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut committed = Vec::new();
        while committed.len() < 1500 {
            let line = lines.next().expect("load tool ended early").unwrap();
            committed.push(line);
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever it printed before dying was committed.
        committed.extend(lines.map_while(Result::ok));
        let v = site.ok(&["audit", "verify"]);
        eprintln!(
            "{engine}: {} committed before kill -9; {v}",
            committed.len()
        );
        let stored: std::collections::HashMap<i64, (String, u64)> = site
            .export_jsonl(&[])
            .into_iter()
            .filter(|r| r["kind"] == "call_turn")
            .map(|r| {
                (
                    r["seq"].as_i64().unwrap(),
                    (
                        r["body"]["call_id"].as_str().unwrap().to_string(),
                        r["body"]["turn"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        for line in &committed {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let seq: i64 = parts[1].parse().unwrap();
            let turn: u64 = parts[3].parse().unwrap();
            assert_eq!(
                stored.get(&seq),
                Some(&(parts[2].to_string(), turn)),
                "{engine}: committed record {seq} missing after kill -9"
            );
        }
        // The log goes on after the crash.
        site.ok(&["audit", "load", "--records", "50", "--writers", "2"]);
        site.ok(&["audit", "verify"]);
    }
}

#[test]
fn two_processes_on_one_postgres_form_one_chain() {
    let pg = Postgres::start();
    let a = Site::new(Some((&pg, "shared")), "");
    a.ok(&["keys", "init"]);
    // The second process: its own dir and config, same database, same key.
    let b_dir = tempfile::tempdir().unwrap();
    let b_config = b_dir.path().join("carevoice.toml");
    std::fs::write(
        &b_config,
        format!(
            "[server]\ndata_dir = \"{}\"\n[store]\nurl = \"{}\"\n[keys]\nfile = \"{}\"\n",
            b_dir.path().join("data").display(),
            pg.url("shared"),
            a.key_file().display()
        ),
    )
    .unwrap();
    let spawn = |config: &Path, cwd: &Path| {
        Command::new(bin())
            .args(["--config", config.to_str().unwrap()])
            .args(["audit", "load", "--records", "3000", "--writers", "8"])
            .current_dir(cwd)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let p1 = spawn(&a.config, a.dir.path());
    let p2 = spawn(&b_config, b_dir.path());
    for p in [p1, p2] {
        let out = p.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let v = a.ok(&["audit", "verify"]);
    assert!(v.contains("records 1..=6000"), "{v}");
    let turns = a.sql("SELECT COUNT(*) FROM audit_log WHERE kind = 'call_turn'");
    assert_eq!(turns.trim(), "6000");
    // Both processes wrote interleaved into the one chain.
    let calls = a.sql("SELECT COUNT(DISTINCT body) FROM audit_log");
    assert!(calls.trim().parse::<u64>().unwrap() > 1);
}

/// `carevoice serve` must stop at start-up; it is killed if it does not within 30 s.
fn serve_fails(site: &Site) -> String {
    let mut child = Command::new(bin())
        .args(["--config", site.config.to_str().unwrap(), "serve"])
        .env("CAREVOICE_ADMIN__PORT", support::free_port().to_string())
        .current_dir(site.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve started with a bad key");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    failure(&child.wait_with_output().unwrap())
}

fn failure(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected a failure");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn key_file_problems_stop_start_up_with_a_clear_error() {
    let site = Site::new(None, "");
    let out = site.cv(&["keys", "init"]);
    assert!(out.status.success());
    let out = site.cv(&["keys", "init"]);
    assert!(failure(&out).contains("exists already"));
    site.ok(&["audit", "load", "--records", "10", "--writers", "2"]);
    let key = site.key_file();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Wrong permissions.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = serve_fails(&site);
    assert!(
        err.contains("mode 0644 lets group or others read it") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Missing key, on a database that has encrypted data: no new key is made.
    let saved = std::fs::read_to_string(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let err = serve_fails(&site);
    assert!(
        err.contains("not found") && err.contains("keys init"),
        "{err}"
    );
    assert!(!key.exists(), "a missing key must not be replaced silently");

    // Another installation's key.
    let other = Site::new(None, "");
    other.ok(&["keys", "init"]);
    std::fs::copy(other.key_file(), &key).unwrap();
    let err = serve_fails(&site);
    assert!(
        err.contains("does not hold") && err.contains("wrong key file"),
        "{err}"
    );

    // The right id with the wrong key bytes.
    let id = saved
        .lines()
        .find(|l| !l.starts_with('#'))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    std::fs::write(
        &key,
        format!("{id} AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"),
    )
    .unwrap();
    let err = failure(&site.cv(&["audit", "verify"]));
    assert!(
        err.contains("cannot unwrap") && err.contains("wrong key"),
        "{err}"
    );

    // A malformed file names file:line.
    std::fs::write(&key, "# comment\nnot-a-key-line\n").unwrap();
    let err = failure(&site.cv(&["audit", "verify"]));
    assert!(
        err.contains("master.key:2: expected `ID BASE64-KEY`"),
        "{err}"
    );

    // Restored, everything verifies.
    std::fs::write(&key, saved).unwrap();
    site.ok(&["audit", "verify"]);

    // Export bounds may be times; bad arguments are named.
    let all = site.export_jsonl(&["--from", "2000-01-01T00:00:00Z", "--to", "10"]);
    assert_eq!(all.len(), 10);
    assert!(
        site.export_jsonl(&["--from", "2999-01-01T00:00:00Z"])
            .is_empty()
    );
    let err = failure(&site.cv(&["audit", "export", "--format", "csv"]));
    assert!(err.contains("--format: expected jsonl or fhir"), "{err}");
    let err = failure(&site.cv(&["audit", "export", "--from", "yesterday"]));
    assert!(
        err.contains("--from: expected a sequence number or an RFC 3339 time"),
        "{err}"
    );
}

#[test]
fn rotation_round_trip_prune_and_export_on_both_engines() {
    for (engine, pg) in engines() {
        let site = loaded(pg.as_ref(), "rotate", 20);
        let before = site.export_jsonl(&["--from", "1", "--to", "20"]);
        assert_eq!(before.len(), 20);
        assert_eq!(
            before[0]["transcript"]["transcript"],
            "I would like to book an appointment next Tuesday morning"
        );
        // Only ciphertexts in the database.
        let raw =
            site.sql("SELECT body || COALESCE(phi, '') || COALESCE(transcript, '') FROM audit_log");
        assert!(
            !raw.contains("Tuesday") && !raw.contains("patient-"),
            "{engine}: plaintext PHI in the database"
        );

        let old_key = std::fs::read_to_string(site.key_file()).unwrap();
        let out = site.ok(&["keys", "rotate"]);
        assert!(
            out.contains("re-wrapped 2 data keys and 1 signing keys"),
            "{out}"
        );
        let new_key = std::fs::read_to_string(site.key_file()).unwrap();
        assert_ne!(old_key, new_key);
        assert_eq!(new_key.lines().filter(|l| !l.starts_with('#')).count(), 1);
        let after = site.export_jsonl(&["--from", "1", "--to", "20"]);
        assert_eq!(before, after, "{engine}: same records after rotation");
        site.ok(&["audit", "verify"]);
        // The old key no longer opens anything.
        let new_copy = site.dir.path().join("new.key");
        std::fs::write(&new_copy, &new_key).unwrap();
        std::fs::write(site.key_file(), &old_key).unwrap();
        let err = failure(&site.cv(&["audit", "verify"]));
        assert!(err.contains("does not hold"), "{err}");
        // The KMS command path: the key comes from a program's output.
        std::fs::remove_file(site.key_file()).unwrap();
        let kms = format!("cat {}", new_copy.display());
        let mut config = std::fs::read_to_string(&site.config).unwrap();
        config.push_str(&format!("\n[keys]\nkms_command = \"{kms}\"\n"));
        std::fs::write(&site.config, config).unwrap();
        site.ok(&["audit", "verify"]);

        // Export as FHIR; the export itself is recorded.
        let out = site.cv(&["audit", "export", "--format", "fhir"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bundle: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "collection");
        let entries = bundle["entry"].as_array().unwrap();
        assert!(entries.len() >= 21, "{engine}: {}", entries.len());
        for e in entries {
            let ev = &e["resource"];
            assert_eq!(ev["resourceType"], "AuditEvent");
            assert!(ev["type"]["code"].is_string() && ev["recorded"].is_string());
            assert_eq!(ev["agent"][0]["requestor"], true);
            assert!(ev["source"]["observer"]["display"].is_string());
        }
        assert!(
            entries
                .iter()
                .any(|e| e["resource"]["entity"][0]["what"]["reference"] == "Patient/patient-0")
        );
        let all = site.export_jsonl(&[]);
        let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"key_rotation"), "{kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| **k == "export").count(),
            3,
            "{kinds:?}"
        );
        let redacted = site.export_jsonl(&["--redact", "--from", "1", "--to", "1"]);
        assert_eq!(redacted[0]["transcript"]["redacted"], true);

        // Prune a year and a bit later: transcripts are crypto-shredded, records stay.
        let later = |days: i64| {
            jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_hours(24 * days))
                .unwrap()
                .to_string()
        };
        let out = site.ok(&["audit", "prune", "--as-of", &later(400)]);
        assert!(
            out.contains("0 records deleted") && out.contains("transcript-"),
            "{out}"
        );
        assert!(!out.contains("audit-20"), "{out}");
        let v = site.ok(&["audit", "verify"]);
        assert!(
            v.contains("crypto-shredded") && !v.contains(" 0 crypto-shredded"),
            "{v}"
        );
        let shredded = site.export_jsonl(&["--from", "1", "--to", "1"]);
        assert_eq!(shredded[0]["transcript"]["shredded"], true, "{engine}");
        assert!(
            shredded[0]["phi"]["patient"]
                .as_str()
                .is_some_and(|p| p.starts_with("patient-")),
            "{engine}: audit PHI still readable"
        );
        let wrapped = site.sql(
            "SELECT COUNT(*) FROM data_keys WHERE purpose = 'transcript' AND wrapped IS NOT NULL",
        );
        assert_eq!(wrapped.trim(), "0");

        // Seven years later: the records go too, anchored by a checkpoint; the chain verifies.
        let out = site.ok(&["audit", "prune", "--as-of", &later(7 * 366)]);
        assert!(!out.contains(" 0 records deleted"), "{out}");
        let v = site.ok(&["audit", "verify"]);
        assert!(!v.contains("pruned through 0"), "{v}");
        let left = site.sql("SELECT COUNT(*) FROM audit_log");
        assert_eq!(left.trim(), "1", "{engine}: only the prune record remains");
    }
}

#[test]
fn serve_records_its_config_and_checkpoints_at_shutdown() {
    let server = support::carevoice::Server::start("");
    server.child.signal("TERM");
    let mut server = server;
    let status = server
        .child
        .wait_exit(Duration::from_secs(30))
        .expect("serve stopped");
    assert!(status.success(), "{}", server.child.log_tail());
    let db = server.dir.path().join("data").join("carevoice.db");
    let sqlite = |sql: &str| {
        support::run_ok(
            "sqlite3",
            Command::new(support::program("sqlite3")).arg(&db).arg(sql),
        )
    };
    assert_eq!(sqlite("SELECT kind FROM audit_log").trim(), "config_change");
    assert_eq!(
        sqlite("SELECT seq FROM audit_checkpoints").trim(),
        sqlite("SELECT seq FROM audit_head").trim()
    );
    use std::os::unix::fs::PermissionsExt;
    let key = server.dir.path().join("data").join("master.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600,
        "first start makes the key file"
    );
    let log = std::fs::read_to_string(server.dir.path().join("serve.log")).unwrap_or_default();
    assert!(log.contains("audit log closed"), "{log}");
}

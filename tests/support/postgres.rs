//! A real PostgreSQL server in a temp dir: initdb + pg_ctl, as the `postgres` user when the tests
//! run as root (PostgreSQL refuses to run as root).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::{free_port, run_ok};

pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("initdb").is_file());
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb); run scripts/setup")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
fn pg_command(bin: &std::path::Path, tool: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        cmd
    } else {
        Command::new(bin.join(tool))
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("carevoice-pg-")
            .tempdir()
            .unwrap();
        if is_root() {
            run_ok(
                "chown postgres",
                Command::new("chown").arg("postgres").arg(dir.path()),
            );
        }
        let data = dir.path().join("data");
        run_ok(
            "initdb",
            pg_command(&bin, "initdb")
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ])
                .arg("--no-sync"),
        );
        let port = free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200",
            dir.path().display()
        );
        run_ok(
            "pg_ctl start",
            pg_command(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("pg.log"))
                .args(["-o", &options, "-w", "-t", "30", "start"]),
        );
        let pg = Postgres { port, dir, bin };
        // -w waited for readiness; a short retry loop covers a slow first connection.
        for _ in 0..50 {
            if super::tcp_open(port) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    /// Creates a database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        run_ok(
            "createdb",
            Command::new(self.bin.join("createdb"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .arg(name),
        );
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs SQL with psql (for tamper tests at the database level).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        run_ok(
            "psql",
            Command::new(self.bin.join("psql")).arg(self.url(db)).args([
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ]),
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

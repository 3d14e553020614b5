//! `carepath`: every service on one port (and the FHIR API on another), plus migrate,
//! import, token, FHIR clients and audit.

use std::{path::PathBuf, process::ExitCode};

use carepath_cli::{self as cli, CliError, DbArgs, KeyArgs, ServeArgs, fhir::FhirArgs};
use carepath_server::Area;
use carepath_store::AuditVerification;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "carepath",
    version,
    about = "Utilization and care management for a health plan"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve every carepath service on one port over gRPC, and the FHIR API on another.
    Serve(Box<ServeCommand>),
    /// Apply pending database migrations and exit.
    Migrate(DbArgs),
    /// Import a directory JSON file (plans, members, providers, staff) in one transaction.
    Import {
        /// The JSON file; `data/demo/directory.json` is the shipped demo.
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print a bearer token signed with this instance's key.
    Token {
        /// provider, member, nurse, physician_reviewer, admin or service.
        #[arg(long)]
        role: String,
        /// An NPI for a provider, a member id, a staff id, or a service name.
        #[arg(long)]
        subject: String,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 8)]
        hours: i64,
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        keys: KeyArgs,
    },
    /// Register and list FHIR API clients; make a client key pair and assertion.
    FhirClient {
        #[command(subcommand)]
        action: cli::smart::FhirClientCommand,
    },
    /// Fill a database with years of precertification history (cases with their
    /// events, sent notices and audit entries), for scale tests and benchmarks; run it
    /// before serving the database.
    GenerateHistory(cli::HistoryArgs),
    /// Work with the audit log.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Debug, clap::Args)]
struct ServeCommand {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(flatten)]
    fhir: FhirArgs,
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Check that the audit log's hash chain is intact, every chain's head included,
    /// and that every entry anchored outside the database is still there; with
    /// --audit-archive-url, every archived segment too, the live log continuing from
    /// them. Exits non-zero if not.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        anchors: cli::AnchorArgs,
        #[command(flatten)]
        archive: cli::ArchiveArgs,
    },
}

async fn run(command: Command) -> Result<(), CliError> {
    match command {
        Command::Serve(args) => cli::run_server(&args.serve, Area::ALL, Some(&args.fhir)).await,
        Command::Migrate(db) => {
            cli::open_store(&db).await?;
            println!("migrations applied to {}", db.database_url);
            Ok(())
        }
        Command::Import { file, db } => {
            let store = cli::open_store(&db).await?;
            let s = cli::import_file(&store, &file).await?;
            println!(
                "imported {} plans, {} members, {} providers, {} staff",
                s.plans, s.members, s.providers, s.staff
            );
            Ok(())
        }
        Command::Token {
            role,
            subject,
            hours,
            db,
            keys,
        } => {
            println!(
                "{}",
                cli::mint_token(&keys, &db, &role, &subject, chrono::Duration::hours(hours))
                    .await?
            );
            Ok(())
        }
        Command::FhirClient { action } => cli::smart::run(action).await,
        Command::GenerateHistory(args) => {
            let summary = cli::generate_history(&args).await?;
            println!("{}", cli::history_report(&summary));
            Ok(())
        }
        Command::Audit {
            action:
                AuditAction::Verify {
                    db,
                    anchors,
                    archive,
                },
        } if archive.audit_archive_url.is_some() => {
            let Some(archive) = archive.archive()? else {
                return Ok(());
            };
            match cli::verify_audit_archived(&db, &anchors, &archive).await? {
                (
                    cli::ArchiveVerdict::Intact {
                        segments,
                        archived,
                        live,
                    },
                    file,
                ) => {
                    let anchors = match file {
                        Some(file) => format!("anchors in {} present", file.display()),
                        None => "no anchor file: removed newest entries cannot be ruled out".into(),
                    };
                    println!(
                        "audit log intact: {} entries ({archived} in {segments} archived segments, {live} in the database), {anchors}",
                        archived + live
                    );
                    Ok(())
                }
                (cli::ArchiveVerdict::Broken { place, reason }, _) => Err(CliError::Usage(
                    format!("audit log broken at {place}: {reason}"),
                )),
            }
        }
        Command::Audit {
            action: AuditAction::Verify { db, anchors, .. },
        } => match cli::verify_audit(&db, &anchors).await? {
            (AuditVerification::Intact { entries }, Some(file)) => {
                println!(
                    "audit log intact: {entries} entries, anchors in {} present",
                    file.display()
                );
                Ok(())
            }
            (AuditVerification::Intact { entries }, None) => {
                println!(
                    "audit log intact: {entries} entries (no anchor file: removed newest entries cannot be ruled out)"
                );
                Ok(())
            }
            (AuditVerification::Broken { seq, reason }, _) => Err(CliError::Usage(format!(
                "audit log broken at entry {seq}: {reason}"
            ))),
        },
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().command;
    let traces = match &command {
        Command::Serve(args) => args.serve.telemetry.otlp_endpoint.clone(),
        _ => None,
    };
    let traces = traces.as_deref().map(str::trim).filter(|e| !e.is_empty());
    if let Err(e) = cli::init_logging_with_traces(traces, "carepath") {
        eprintln!("carepath: {e}");
        return ExitCode::FAILURE;
    }
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("carepath: {e}");
            ExitCode::FAILURE
        }
    }
}

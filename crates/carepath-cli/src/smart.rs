//! `carepath fhir-client`: register and list the FHIR API's backend-service
//! clients, and, to try the API by hand, make a client key pair and sign the
//! assertion that is exchanged for an access token.

use std::path::{Path, PathBuf};

use carepath_app::{
    Caller, PageRequest,
    auth::Authenticator,
    smart::{self, RegisterClient, Smart, client},
};
use carepath_core::{Actor, Clock, Role, SystemClock};

use crate::{CliError, DbArgs};

/// What `carepath fhir-client` does.
#[derive(Debug, clap::Subcommand)]
pub enum FhirClientCommand {
    /// Register a client (or replace the one with the same id) as the admin `cli`.
    Register {
        /// The client's id: the iss and sub of its assertions.
        #[arg(long)]
        client_id: String,
        /// Who the client is, for people.
        #[arg(long)]
        name: String,
        /// The NPI of the directory provider the client acts for.
        #[arg(long)]
        npi: String,
        /// A file holding the client's public keys (a JSON Web Key Set).
        #[arg(long)]
        jwks: PathBuf,
        /// The system/ scopes the client may be granted, space-separated.
        #[arg(long, default_value = smart::DEFAULT_CLIENT_SCOPES)]
        scope: String,
        /// Register the client disabled: its assertions are refused.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the registered clients.
    List(DbArgs),
    /// Make an ES384 key pair: DIR/ID.key.pem (private, PKCS#8) and DIR/ID.jwks.json.
    Keygen {
        /// The client id, also the key's kid.
        #[arg(long)]
        client_id: String,
        /// The folder to write both files to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a signed client assertion with a fresh jti (to exchange with curl).
    Assertion {
        /// The client id (iss and sub).
        #[arg(long)]
        client_id: String,
        /// The private key file (PKCS#8 PEM, P-384 or RSA).
        #[arg(long)]
        key: PathBuf,
        /// The token endpoint URL exactly as the server publishes it.
        #[arg(long)]
        aud: String,
        /// The key id; the client id when not given.
        #[arg(long)]
        kid: Option<String>,
        /// Minutes the assertion is valid (1 to 5).
        #[arg(long, default_value_t = 5)]
        minutes: i64,
    },
}

/// Runs one `fhir-client` command.
pub async fn run(command: FhirClientCommand) -> Result<(), CliError> {
    match command {
        FhirClientCommand::Register {
            client_id,
            name,
            npi,
            jwks,
            scope,
            disabled,
            db,
        } => {
            let jwks = read(&jwks)?;
            let smart = open(&db).await?;
            let client = smart
                .register_client(
                    &admin("fhir-client register")?,
                    RegisterClient {
                        client_id,
                        name,
                        npi,
                        jwks,
                        scopes: scope,
                        active: !disabled,
                    },
                )
                .await?;
            println!(
                "registered {} for provider {} with scopes {}{}",
                client.client_id,
                client.npi.as_str(),
                client.scopes,
                if client.active { "" } else { " (disabled)" }
            );
            Ok(())
        }
        FhirClientCommand::List(db) => {
            let smart = open(&db).await?;
            let caller = admin("fhir-client list")?;
            let mut token = String::new();
            loop {
                let page = smart
                    .list_clients(
                        &caller,
                        PageRequest {
                            token: token.clone(),
                            size: 0,
                        },
                    )
                    .await?;
                for c in &page.items {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        c.client_id,
                        c.npi.as_str(),
                        if c.active { "active" } else { "disabled" },
                        c.scopes,
                        c.name
                    );
                }
                if page.next_page_token.is_empty() {
                    return Ok(());
                }
                token = page.next_page_token;
            }
        }
        FhirClientCommand::Keygen { client_id, out } => {
            if !smart::valid_client_id(&client_id) {
                return Err(CliError::Usage(format!(
                    "--client-id must be 1 to {} of A-Z a-z 0-9 . _ -",
                    smart::MAX_CLIENT_ID_LEN
                )));
            }
            let keys = client::generate_es384(&client_id).map_err(usage)?;
            let key_path = out.join(format!("{client_id}.key.pem"));
            let jwks_path = out.join(format!("{client_id}.jwks.json"));
            std::fs::create_dir_all(&out).map_err(|e| write_error(&out, e))?;
            write_private(&key_path, keys.private_pem.as_bytes())?;
            let jwks = serde_json::to_string_pretty(&keys.jwks).map_err(usage)?;
            std::fs::write(&jwks_path, jwks + "\n").map_err(|e| write_error(&jwks_path, e))?;
            println!("{}\n{}", key_path.display(), jwks_path.display());
            Ok(())
        }
        FhirClientCommand::Assertion {
            client_id,
            key,
            aud,
            kid,
            minutes,
        } => {
            let pem = std::fs::read(&key).map_err(|source| CliError::Read {
                path: key.clone(),
                source,
            })?;
            let kid = kid.unwrap_or_else(|| client_id.clone());
            let assertion = client::sign_assertion(
                &pem,
                &client_id,
                &kid,
                &aud,
                SystemClock.now(),
                chrono::Duration::minutes(minutes),
            )
            .map_err(usage)?;
            println!("{assertion}");
            Ok(())
        }
    }
}

/// The use cases over the database; no token is minted or verified here, so the
/// application has no keys.
async fn open(db: &DbArgs) -> Result<Smart, CliError> {
    let store = crate::open_store(db).await?;
    let auth = Authenticator::with_public_keys(&[])?;
    Ok(Smart::new(carepath_app::setup::app(store, auth)))
}

/// The command line acting as the admin `cli`.
fn admin(operation: &str) -> Result<Caller, CliError> {
    Ok(Caller::new(Actor::new(Role::Admin, "cli")?, operation))
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.to_owned(),
        source,
    })
}

fn usage(e: impl std::fmt::Display) -> CliError {
    CliError::Usage(e.to_string())
}

fn write_error(path: &Path, e: std::io::Error) -> CliError {
    CliError::Usage(format!("cannot write {}: {e}", path.display()))
}

/// Writes a new file readable by its owner only; an existing file is not replaced.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| write_error(path, e))?;
    file.write_all(bytes).map_err(|e| write_error(path, e))?;
    file.sync_all().map_err(|e| write_error(path, e))
}

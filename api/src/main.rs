//! `kiln-api`: serve the HTTP API, apply migrations, or manage API keys.

use anyhow::Context;
use clap::{Parser, Subcommand};
use kiln_api::{Application, keys};
use kiln_core::{Config, db, shutdown, telemetry};

/// mimalloc instead of glibc's malloc: a cached read allocates and frees small buffers on both
/// runtime threads, and glibc's arenas spent about a fifth of the API's CPU in that benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "kiln-api", version, about = "Kiln's HTTP API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create the database if it does not exist, apply pending migrations and exit.
    Migrate,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// List or restore Postgres backups.
    #[command(subcommand)]
    Backups(BackupsCommand),
}

#[derive(Subcommand)]
enum BackupsCommand {
    /// Print every backup, newest first.
    List,
    /// Verify a backup's checksum, then restore it into a database (best an empty one).
    Restore {
        id: uuid::Uuid,
        /// The target database URL.
        #[arg(long)]
        into: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once, alone on the last line, and stored only as a hash.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: media, email, admin.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// The tenant whose data the key sees (defaults to the name).
        #[arg(long)]
        tenant: Option<String>,
        /// Opt in to notifications: "media ready/failed" for this key's uploads, and the
        /// tenant's daily digest, go to this address.
        #[arg(long)]
        notify_email: Option<String>,
    },
    /// List keys, one a line: id, name, tenant, scopes, created, last used, revoked (tabs).
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key now; its dashboard sessions end, requests fail within
    /// KILN_AUTH_CACHE_SECS.
    Revoke { id: uuid::Uuid },
    /// Make a new key like this one (printed once) and revoke this one after --overlap.
    Rotate {
        id: uuid::Uuid,
        /// How long the old key keeps working, like 1h or 7d (default: not at all).
        #[arg(long)]
        overlap: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    let telemetry = telemetry::init(config.log_format, "kiln-api");
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let served = serve(config).await;
            telemetry.shutdown().await;
            served
        }
        Command::Migrate => {
            db::create_database_if_missing(&config.database_url).await?;
            let pool = db::connect_lazy(&config.database_url, 1)?;
            db::migrate(&pool).await.context("running migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Backups(command) => {
            let pool = db::connect_lazy(&config.database_url, 1)?;
            match command {
                BackupsCommand::List => kiln_api::backups::list(&pool).await,
                BackupsCommand::Restore { id, into } => {
                    let storage = kiln_core::storage::Storage::from_url(&config.storage_url)?;
                    kiln_api::backups::restore(&pool, &storage, id, &into).await
                }
            }
        }
        Command::Keys(command) => {
            let pool = db::connect_lazy(&config.database_url, 1)?;
            keys_command(&pool, command).await
        }
    }
}

async fn keys_command(pool: &sqlx::PgPool, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            name,
            scopes,
            tenant,
            notify_email,
        } => {
            let spec = keys::KeySpec {
                name: &name,
                tenant: tenant.as_deref(),
                scopes: &scopes,
                notify_email: notify_email.as_deref(),
            };
            let created = keys::create(pool, &spec).await?;
            eprintln!(
                "created API key {} ({name}); store it now, it is not shown again:",
                created.id
            );
            println!("{}", created.key);
        }
        KeysCommand::List { tenant } => {
            for key in keys::list(pool, tenant.as_deref()).await? {
                println!("{}", keys::list_line(&key));
            }
        }
        KeysCommand::Revoke { id } => {
            keys::revoke(pool, id).await?;
            eprintln!("revoked API key {id}");
        }
        KeysCommand::Rotate { id, overlap } => {
            let overlap = match overlap.as_deref().map(str::trim) {
                None | Some("0") => std::time::Duration::ZERO,
                Some(raw) => kiln_core::config::parse_retention("--overlap", raw)?,
            };
            let (created, old) = keys::rotate(pool, id, overlap).await?;
            let until = old.revoked_at.map_or_else(String::new, |t| t.to_rfc3339());
            eprintln!(
                "created API key {} to replace {id}, which works until {until}; \
                 store the new key now, it is not shown again:",
                created.id
            );
            println!("{}", created.key);
        }
    }
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let metrics_addr = config.metrics_addr.unwrap_or(([127, 0, 0, 1], 9090).into());
    let cancel = shutdown::on_signal();
    let metrics = telemetry::install_metrics_recorder()?;
    let (_, metrics_task) = telemetry::serve_metrics(metrics_addr, metrics, cancel.clone()).await?;
    let app = Application::build(config).await?;
    app.run_until_stopped(cancel).await?;
    metrics_task.await.ok();
    Ok(())
}

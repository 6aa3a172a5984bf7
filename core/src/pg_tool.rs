//! Postgres' own tools (`pg_dump`, `pg_restore`) as child processes, without the password on
//! their command line, where any local user could read it (`ps`, `/proc/<pid>/cmdline`): it
//! goes to the child's environment (`PGPASSWORD`), which only its own user can read.

use percent_encoding::percent_decode_str;
use tokio::process::Command;
use url::Url;

/// `program --dbname <url without its password>`, with the password (from the URL's user info
/// or a `password` query parameter) in `PGPASSWORD`.
pub fn command(program: &str, database_url: &str) -> Result<Command, url::ParseError> {
    let mut url = Url::parse(database_url)?;
    let mut password = url
        .password()
        .map(|p| percent_decode_str(p).decode_utf8_lossy().into_owned());
    // Cannot fail for a URL that has a host, which a password needs anyway.
    let _ = url.set_password(None);
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    if let Some((_, value)) = pairs.iter().find(|(key, _)| key == "password") {
        password = Some(value.clone());
        let kept: Vec<_> = pairs.iter().filter(|(key, _)| key != "password").collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    let mut command = Command::new(program);
    command.arg("--dbname").arg(url.as_str());
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(command: &Command) -> (Vec<String>, Option<String>) {
        let std = command.as_std();
        let args = std
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let password = std
            .get_envs()
            .find(|(k, _)| *k == "PGPASSWORD")
            .and_then(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()));
        (args, password)
    }

    #[test]
    fn the_password_moves_from_the_url_to_the_environment() {
        let command = command(
            "pg_dump",
            "postgres://kiln:s%40cret@db:5432/kiln?sslmode=require",
        )
        .expect("valid");
        let (args, password) = parts(&command);
        assert_eq!(
            args,
            ["--dbname", "postgres://kiln@db:5432/kiln?sslmode=require"]
        );
        assert_eq!(password.as_deref(), Some("s@cret"));

        let command = command_for("postgres://kiln@db/kiln?password=pw&application_name=x");
        let (args, password) = parts(&command);
        assert_eq!(
            args,
            ["--dbname", "postgres://kiln@db/kiln?application_name=x"]
        );
        assert_eq!(password.as_deref(), Some("pw"));

        let (args, password) = parts(&command_for("postgres://kiln@db/kiln"));
        assert_eq!(args, ["--dbname", "postgres://kiln@db/kiln"]);
        assert_eq!(password, None);
    }

    fn command_for(url: &str) -> Command {
        command("pg_dump", url).expect("valid")
    }
}

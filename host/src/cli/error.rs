use std::path::PathBuf;

/// Everything that can go wrong in a CLI command (other than clap's own usage
/// errors). `main` prints it as `error: {self}` and exits with 1.
#[derive(thiserror::Error, Debug)]
pub enum CliError {
    /// The server answered with an error body `{"error", "field", "detail"}`
    /// (or a non-JSON error, in which case `error` is `http_<status>`).
    #[error("{}", render_api(.detail, .field.as_deref()))]
    Api {
        status: u16,
        error: String,
        field: Option<String>,
        detail: String,
    },

    /// Nothing listens at the server URL (connection refused, DNS failure,
    /// connect timeout).
    #[error(
        "the Weir server is not reachable at {0} ({cause}); start it with `weir serve`, \
         or point --api / WEIR_API_URL at a running server",
        cause = root_cause(.1)
    )]
    Connect(String, #[source] reqwest::Error),

    /// The request failed after connecting (timeout, connection reset,
    /// unreadable body).
    #[error("request to {url} failed: {cause}", cause = root_cause(.source))]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },

    /// Bad command-line input that clap cannot check by itself: a `--param`
    /// without '=', an unreadable `@file`, invalid JSON, ... `arg` names the flag.
    #[error("invalid {arg}: {reason}")]
    Input { arg: String, reason: String },

    /// The server answered 2xx with something the CLI cannot understand.
    #[error("unexpected response from the server: {0}")]
    Response(String),

    /// Writing a file the user asked for (e.g. `--file`) failed.
    #[error("cannot write {}: {source}", .path.display())]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Writing to standard output failed (other than a closed pipe, which is
    /// ignored).
    #[error("cannot write to standard output: {0}")]
    Stdout(#[source] std::io::Error),

    /// A plugin run offline (`weir plugin test`) failed or refused.
    #[error("{0}")]
    Plugin(String),

    /// `weir token` could not open or change the store.
    #[error("{0}")]
    Token(String),

    /// `execute` was given a command it does not run (`serve` is run by main).
    #[error("`weir {0}` is not run by the CLI client")]
    NotAClientCommand(&'static str),
}

impl CliError {
    pub(crate) fn input(arg: impl Into<String>, reason: impl Into<String>) -> Self {
        CliError::Input {
            arg: arg.into(),
            reason: reason.into(),
        }
    }
}

fn render_api(detail: &str, field: Option<&str>) -> String {
    match field {
        Some(field) if !field.is_empty() => format!("{detail} (field: {field})"),
        _ => detail.to_string(),
    }
}

/// The innermost cause of a reqwest error ("Connection refused (os error
/// 111)" rather than "error sending request for url ...").
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

use std::process::ExitCode;

use clap::Parser;
use weir::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any runtime: the supervisor builds its own, on one thread.
    if let Command::Supervise(args) = &cli.command {
        return ExitCode::from(weir::supervise(&args.runs_dir));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => match serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            },
            command => match weir::execute(cli.global, command).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    })
}

async fn serve(args: weir::ServeArgs) -> anyhow::Result<()> {
    weir::init_tracing();
    let mut options = weir::ServeOptions::resolve(
        args.config.as_deref(),
        args.data_dir,
        args.listen,
        args.api_url,
    )?;
    if let Some(url) = args.database_url {
        options.database = weir::Database::from_url(&url)?;
    }
    if let Some(path) = args.kubeconfig {
        options.kubernetes.default.kubeconfig = Some(path);
    }
    if let Some(context) = args.kube_context {
        options.kubernetes.default.context = Some(context);
    }
    if let Some(mode) = args.auth {
        options.auth = weir::AuthMode::parse(&mode)
            .ok_or_else(|| anyhow::anyhow!("invalid --auth {mode:?}: use on, off or auto"))?;
    }
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        options.tls = Some(weir::TlsFiles { cert, key });
    }
    weir::serve(options).await?;
    Ok(())
}

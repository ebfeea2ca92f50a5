//! `knactor display`: an event-display sink.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use actix_web::{web, App, HttpServer};
use anyhow::Context as _;
use clap::Args;

#[derive(Args)]
pub(crate) struct DisplayArgs {
    /// Address to receive CloudEvents on (any path).
    #[arg(long, env = "KNACTOR_DISPLAY_LISTEN", default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

pub(crate) fn run(args: DisplayArgs) -> anyhow::Result<ExitCode> {
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener.local_addr()?;
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .default_service(web::to(knactor_gateway::display::receive))
        })
        .workers(1)
        .listen(listener)?
        .run();
        // stdout carries the events; the banner goes to stderr.
        eprintln!("knactor display listening on http://{bound}");
        server.await?;
        Ok(ExitCode::SUCCESS)
    })
}

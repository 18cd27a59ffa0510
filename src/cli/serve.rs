//! `freeze-attn serve`: the OpenAI-compatible server over the library (see docs/api.md).

use super::common::{read_small_file, ModelArgs, SamplingArgs};
use clap::Args;
use freeze_attn::server::{serve, ServeOptions};
use freeze_attn::SessionHost;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on; anything but loopback needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0 picks a free one; the chosen address is printed).
    #[arg(long, default_value_t = 8765)]
    pub port: u16,
    /// Require `Authorization: Bearer TOKEN` on every request (also from FREEZE_ATTN_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// Disk for cache nodes (the states of recent requests), in GB; the least recently used are
    /// evicted past it. Named nodes are never evicted.
    #[arg(long, default_value_t = 4.0)]
    pub cache_gb: f64,
    /// Allow browser requests from this origin (no CORS otherwise).
    #[arg(long)]
    pub cors: Option<String>,
    /// Largest JSON request body, in MB.
    #[arg(long, default_value_t = 16)]
    pub max_body_mb: u64,
    /// Largest uploaded bundle, in MB.
    #[arg(long, default_value_t = 8192)]
    pub max_bundle_mb: u64,
    /// A chat template (Jinja) to use instead of the model's own: for function calling with a
    /// model whose template has none (ChatML models: assets/templates/chatml-tools.jinja).
    #[arg(long, value_name = "FILE")]
    pub chat_template: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

pub fn run(a: ServeArgs) -> anyhow::Result<()> {
    if !(a.cache_gb.is_finite() && a.cache_gb >= 0.0) {
        anyhow::bail!("--cache-gb must be a number of GB, at least 0");
    }
    let mut options = ServeOptions::new(SocketAddr::new(a.host, a.port));
    options.token = a.token.clone().or_else(|| std::env::var("FREEZE_ATTN_TOKEN").ok());
    options.cors = a.cors.clone();
    options.max_body = usize::try_from(a.max_body_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    options.max_bundle = a.max_bundle_mb.saturating_mul(1 << 20);
    options.model_alias = Some(a.model.model.clone());
    options.check()?;
    let params = a.sampling.params();
    params.validate()?;
    let template = a
        .chat_template
        .as_deref()
        .map(|p| read_small_file(p, "chat template"))
        .transpose()?;
    let quota = (a.cache_gb * 1e9) as u64;
    let host = Arc::new(SessionHost::open(a.model.model.clone(), a.model.device()?));
    let model = host.run_blocking(move |s| {
        if let Some(t) = &template {
            s.use_chat_template(t)?;
        }
        s.params = params;
        s.cache_quota = Some(quota);
        Ok(s.model.info.clone())
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        serve(
            host,
            options,
            |addr| {
                println!(
                    "listening on http://{addr} (model {}, {})",
                    model.name, model.weight_type
                );
                let _ = std::io::stdout().flush();
            },
            shutdown,
        )
        .await
    })?;
    Ok(())
}

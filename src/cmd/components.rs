//! `rediff components`.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `rediff components`.
#[derive(Debug, Args)]
pub struct ComponentsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,

    /// Load a plugin library (a `cdylib` built with rediff_api::export_plugin!)
    /// and list its components too; repeatable. A plugin is native code that runs with your privileges.
    #[arg(long = "plugin", value_name = "PATH")]
    plugins: Vec<PathBuf>,
}

/// Lists every registered component.
pub fn run(args: ComponentsArgs) -> anyhow::Result<()> {
    let registry = crate::registry::with_plugins(&args.plugins)?;
    let list = registry.list();
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut kind = None;
    for c in list {
        if kind != Some(c.kind) {
            outln!("{}:", c.kind);
            kind = Some(c.kind);
        }
        outln!(
            "  {:<16} {:<28} {}",
            c.name,
            c.origin.to_string(),
            c.summary
        );
    }
    Ok(())
}

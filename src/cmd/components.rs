//! `rediff components`.

use clap::Args;

/// Arguments of `rediff components`.
#[derive(Debug, Args)]
pub struct ComponentsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Lists every registered component.
pub fn run(args: ComponentsArgs) -> anyhow::Result<()> {
    let registry = crate::registry::builtin()?;
    let list = registry.list();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut kind = None;
    for c in list {
        if kind != Some(c.kind) {
            println!("{}:", c.kind);
            kind = Some(c.kind);
        }
        println!(
            "  {:<16} {:<28} {}",
            c.name,
            c.origin.to_string(),
            c.summary
        );
    }
    Ok(())
}

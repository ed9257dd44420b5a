//! `orders aws bootstrap`: creates, idempotently, every AWS resource the service needs
//! (tables, bus, rules and queues from the route table, bucket) — for an emulator or a
//! quick trial account. Production deploys use the CDK app in `cdk/`.

use anyhow::Context;

use crate::backend_args::BackendArgs;

#[derive(clap::Args, Debug)]
pub struct AwsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Debug)]
enum Action {
    /// Create the tables, bus, rules, queues and bucket that are missing.
    Bootstrap(BootstrapArgs),
}

#[derive(clap::Args, Debug)]
struct BootstrapArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Print what would be created (tables, queues and their settings) as JSON, and stop:
    /// the same plan the bootstrap carries out, and that the CDK tests compare with the
    /// stack (backend/aws-bootstrap-plan.json is the default configuration's).
    #[arg(long)]
    print_plan: bool,
}

pub async fn run(args: AwsArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Bootstrap(BootstrapArgs {
            print_plan: true, ..
        }) => {
            let plan = backend::aws::bootstrap::plan(
                &backend::aws::AwsConfig::from_env(),
                events_schema::route_table(),
            );
            println!("{}", serde_json::to_string_pretty(&plan)?);
            Ok(())
        }
        Action::Bootstrap(BootstrapArgs { backend, .. }) => {
            let aws = backend.connect_aws().await?;
            let created = aws
                .bootstrap(events_schema::route_table())
                .await
                .context("bootstrapping the AWS resources")?;
            if created.is_empty() {
                println!("everything already exists");
            }
            for name in created {
                println!("created {name}");
            }
            Ok(())
        }
    }
}

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use ringlog::config::{BrokerConfig, Overrides};

#[global_allocator]
static ALLOC: ringlog::alloc::BrokerAlloc = ringlog::alloc::BrokerAlloc;

#[derive(Parser)]
#[command(
    name = "ringlog",
    version,
    about = "A Kafka-compatible message broker, thread-per-core on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at start-up
enum Command {
    /// Run a broker.
    #[command(after_help = "Examples:
  ringlog start
  ringlog start --data-dir /var/lib/ringlog --listen 0.0.0.0:9092 --advertised-listener broker1:9092
  ringlog start --config ringlog.toml --metrics-listen 127.0.0.1:9644")]
    Start {
        /// Data directory (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Address to listen on (default 0.0.0.0:9092).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Address clients are told to connect to (default 127.0.0.1:<listen port>).
        #[arg(long, value_name = "HOST:PORT")]
        advertised_listener: Option<String>,
        /// Number of shards (pinned cores); default one per available core.
        #[arg(long)]
        shards: Option<usize>,
        /// TOML file whose keys are Kafka broker properties.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Serve Prometheus metrics over HTTP at this address (path /metrics).
        #[arg(long, value_name = "HOST:PORT")]
        metrics_listen: Option<String>,
        /// Log level (error, warn, info, debug, trace) or a tracing filter.
        #[arg(long, default_value = "info")]
        log_level: String,
        /// This node's id (Kafka's node.id; default 0).
        #[arg(long)]
        node_id: Option<i32>,
        /// The controller quorum, ID@HOST:PORT,... (Kafka's
        /// controller.quorum.voters). Absent: a single node.
        #[arg(long, value_name = "ID@HOST:PORT,...")]
        controller_quorum_voters: Option<String>,
        /// Where this node's controller listens (voters only).
        #[arg(long, value_name = "HOST:PORT")]
        controller_listen: Option<String>,
        /// First replication port: shard s listens on PORT+s (default: client port + 100).
        #[arg(long, value_name = "HOST:PORT")]
        replication_listen: Option<String>,
        /// Cluster id for a new cluster (first-listed voter only; default: a fresh id).
        #[arg(long)]
        cluster_id: Option<String>,
    },
    /// Load generator for any Kafka-compatible broker (see docs/benchmarks.md).
    Bench(ringlog::bench::BenchArgs),
    /// Create, list, describe, alter, grow, trim and delete topics.
    #[command(
        after_help = "Examples:\n  ringlog topic create orders -p 6\n  ringlog topic list\n  ringlog topic describe orders"
    )]
    Topic(ringlog::cli::topic::TopicArgs),
    /// Produce records from stdin (one per line, or by -f template).
    Produce(ringlog::cli::produce::ProduceArgs),
    /// Consume records (from an offset, a time, the end; alone or in a group).
    Consume(ringlog::cli::consume::ConsumeArgs),
    /// Cluster information and broker configs.
    Cluster(ringlog::cli::ClusterArgs),
    /// Consumer group tools (list, describe, reset-offsets, delete, offset-delete).
    Group(ringlog::cli::GroupArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  ringlog completion bash > /etc/bash_completion.d/ringlog\n  ringlog completion zsh > \"${fpath[1]}/_ringlog\"\n  ringlog completion fish > ~/.config/fish/completions/ringlog.fish"
    )]
    Completion {
        #[arg(value_enum)]
        shell: ringlog::cli::Shell,
    },
    /// Print and check segment files (.log, .index, .timeindex), like kafka-dump-log.sh.
    DumpLog(ringlog::cli::DumpLogArgs),
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Start {
            data_dir,
            listen,
            advertised_listener,
            shards,
            config,
            metrics_listen,
            log_level,
            node_id,
            controller_quorum_voters,
            controller_listen,
            replication_listen,
            cluster_id,
        } => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&log_level));
            // Colours only on a terminal: a log file or a pipe gets plain text.
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_target(false)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                .init();
            let overrides = Overrides {
                data_dir,
                listen,
                advertised_listener,
                shards,
                config_file: config,
                metrics_listen,
                node_id,
                controller_quorum_voters,
                controller_listen,
                replication_listen,
                cluster_id,
            };
            let result = BrokerConfig::load(&overrides).and_then(ringlog::broker::run);
            if let Err(e) = result {
                eprintln!("ringlog: {e:#}");
                std::process::exit(1);
            }
        }
        Command::Bench(args) => std::process::exit(ringlog::bench::main(args)),
        Command::Topic(args) => std::process::exit(ringlog::cli::topic::main(args)),
        Command::Produce(args) => std::process::exit(ringlog::cli::produce::main(args)),
        Command::Consume(args) => std::process::exit(ringlog::cli::consume::main(args)),
        Command::Cluster(args) => std::process::exit(ringlog::cli::cluster_main(args)),
        Command::Group(args) => std::process::exit(ringlog::cli::group::main(args)),
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                ringlog::cli::Shell::Bash => clap_complete::Shell::Bash,
                ringlog::cli::Shell::Zsh => clap_complete::Shell::Zsh,
                ringlog::cli::Shell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut Cli::command(), "ringlog", &mut std::io::stdout());
        }
        Command::DumpLog(args) => std::process::exit(ringlog::cli::dump_log::main(args)),
    }
}

//! The three attempts as configs (JSON, as a run's `config.json` holds them): a start for a
//! config file of your own (`under8k train --config FILE`).
#![allow(clippy::print_stdout)] // an example program: printing is its job

use under8k_train::TrainConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for attempt in 1..=3 {
        let config = TrainConfig::attempt(attempt)?;
        println!(
            "// attempt {attempt}\n{}",
            serde_json::to_string_pretty(&config)?
        );
    }
    Ok(())
}

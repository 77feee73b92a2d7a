//! The `Log` contract against a real Kafka-protocol broker (tansu on loopback).

#[path = "support/tansu.rs"]
mod tansu;

use std::sync::Arc;

use philo_events::log::{KafkaLog, KafkaLogConfig, Log};

async fn kafka_log() -> Arc<dyn Log> {
    let mut config = KafkaLogConfig::new(tansu::shared());
    config.batch_max_records = 1; // see `KafkaLogConfig::batch_max_records`
    let log = KafkaLog::connect(config).expect("connect");
    Arc::new(log)
}

philo_events::log_contract_suite!(kafka_log());

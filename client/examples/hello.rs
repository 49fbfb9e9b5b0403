//! Produces a few records to a topic and reads them back with the blocking client.
//!
//! ```text
//! cargo run --release -- serve                      # a broker on 127.0.0.1:9092
//! cargo run --release -p quill-client --example hello [BOOTSTRAP]
//! ```

use std::time::{Duration, Instant};

use quill_client::blocking::Client;
use quill_client::{
    ClientConfig, ClientError, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord,
    StartOffset,
};

fn main() -> Result<(), ClientError> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".to_string());
    let client = Client::connect(ClientConfig::new(bootstrap))?;
    match client.admin().create_topic(NewTopic::new("hello", 1)) {
        Ok(()) | Err(ClientError::TopicExists { .. }) => {}
        Err(e) => return Err(e),
    }

    let producer = client.producer(ProducerConfig::default())?;
    let mut first = None;
    for i in 0..3 {
        let meta = producer.send_sync(ProducerRecord::new("hello", format!("hello {i}")))?;
        println!("produced offset {}", meta.offset);
        first.get_or_insert(meta.offset);
    }

    let consumer = client.consumer(ConsumerConfig::default())?;
    consumer.assign(
        "hello",
        Some(vec![0]),
        StartOffset::Offset(first.unwrap_or(0)),
    )?;
    let (mut seen, deadline) = (0, Instant::now() + Duration::from_secs(5));
    while seen < 3 && Instant::now() < deadline {
        for record in consumer.poll(Duration::from_millis(500))? {
            let value = record.value.as_deref().unwrap_or_default();
            println!(
                "consumed offset {}: {}",
                record.offset,
                String::from_utf8_lossy(value)
            );
            seen += 1;
        }
    }
    Ok(())
}

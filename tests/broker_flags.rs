//! Impossible settings are refused before anything starts (issue 9, finding 6: `--shards 0` was
//! accepted and started one shard per CPU). A bad flag is a command-line error (exit 2, clap's
//! message); a bad value in the configuration file is refused with a message naming it (exit 1).

mod common;

use std::time::Duration;

use common::broker::*;
use common::tmpdir;

const START_LIMIT: Duration = Duration::from_secs(30);

#[test]
fn impossible_flags_are_refused() {
    let tmp = tmpdir();
    let data = tmp.path().join("data");
    for value in ["0", "100000"] {
        let (code, stderr) = start_with_shards_arg(&data, value).exited();
        assert_eq!(code, Some(2), "--shards {value}: {stderr}");
        assert!(stderr.contains("--shards"), "--shards {value}: {stderr}");
    }
    // Shard 1 would listen on port 65536.
    let (code, stderr) = Broker::try_start(
        &data,
        2,
        &["--shard-port-base", "65535"],
        START_LIMIT,
        |_| {},
    )
    .exited();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("shard_port_base"), "{stderr}");
}

#[test]
fn impossible_values_in_the_config_file_are_refused() {
    let tmp = tmpdir();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (toml, words) in [
        ("shards = 0\n", "shards"),
        ("[limits]\nfetch_bytes_max = 0\n", "fetch_bytes_max"),
        (
            "[limits]\nconnections_per_shard_max = 0\n",
            "connections_per_shard_max",
        ),
    ] {
        let path = data.join("bad.toml");
        std::fs::write(&path, toml).unwrap();
        let (code, stderr) = Broker::try_start(
            &data,
            1,
            &["--config", path.to_str().unwrap()],
            START_LIMIT,
            |_| {},
        )
        .exited();
        assert_eq!(code, Some(1), "{toml}: {stderr}");
        assert!(stderr.contains(words), "{toml}: {stderr}");
    }
}

/// `quill serve` with `--shards VALUE` as the only shard setting.
fn start_with_shards_arg(data: &std::path::Path, value: &str) -> Started {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_quill"));
    cmd.args(["--log-level", "warn", "serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data)
        .args(["--shards", value]);
    let out = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_exit_or_listen(out, START_LIMIT)
}

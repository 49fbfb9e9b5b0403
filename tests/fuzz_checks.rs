//! The fuzz targets' checks (`fuzz/checks/`), run over a fixed, seeded corpus in every
//! `cargo test`: the round trips they assert (a decoded request re-encodes to the same bytes, a
//! decoded response survives encode + decode, an accepted batch has exactly `recordCount`
//! readable records) are checked here without libFuzzer, and the targets' bodies cannot stop
//! compiling unnoticed. The corpus: valid requests, responses and batches, every truncation
//! and single-byte corruption of them, and seeded random bytes.

mod common;

#[allow(dead_code)]
#[path = "../fuzz/checks/batch_validator.rs"]
mod batch_validator;
#[allow(dead_code)]
#[path = "../fuzz/checks/frame_decoder.rs"]
mod frame_decoder;

use bytes::BytesMut;
use common::broker::{
    create_topic, delete_topic, fetch_request, list_offsets_request, metadata_request,
    produce_request,
};
use common::{batch, seed, stamped};
use quill_proto::error_code::ErrorCode;
use quill_proto::protocol::{encode_response, Request, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Every prefix of `input`, and `input` with each byte inverted in turn.
fn damaged_copies(input: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = (0..input.len()).map(|n| input[..n].to_vec()).collect();
    for i in 0..input.len() {
        let mut v = input.to_vec();
        v[i] ^= 0xFF;
        out.push(v);
    }
    out
}

fn random_inputs(rng: &mut StdRng, n: usize, len_max: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = rng.gen_range(0..=len_max);
            (0..len).map(|_| rng.gen()).collect()
        })
        .collect()
}

#[test]
fn batch_validator_checks_over_a_seeded_corpus() {
    let mut rng = StdRng::seed_from_u64(seed("batch_validator_checks_over_a_seeded_corpus"));
    let valid: Vec<Vec<u8>> = (1..=5)
        .map(|n| stamped(batch(n as u64, n, 20 * n, 1_000), 7, 3))
        .collect();
    let mut inputs = valid.clone();
    inputs.push(valid.concat());
    for v in &valid[..2] {
        inputs.extend(damaged_copies(v));
    }
    inputs.extend(random_inputs(&mut rng, 2000, 300));
    // Random bytes behind a valid header, so the record walk sees garbage (the check fixes the
    // CRC up).
    for _ in 0..500 {
        let mut v = valid[2].clone();
        let at = rng.gen_range(61..v.len());
        rng.fill(&mut v[at..]);
        inputs.push(v);
    }
    for input in &inputs {
        batch_validator::run(input);
    }
    // The corpus reaches the checks' positive path: valid batches are accepted.
    for v in &valid {
        assert!(quill::record::validate_batch(v, 1 << 20).is_ok());
    }
}

fn request_frames() -> Vec<Vec<u8>> {
    let requests = [
        create_topic("t", 3),
        delete_topic("t"),
        metadata_request(None),
        metadata_request(Some(&["a", "bb"])),
        produce_request("t", 1, batch(1, 2, 10, 5)),
        fetch_request("t", 2, 40, 100),
        list_offsets_request("t", 0, -1),
    ];
    requests
        .iter()
        .map(|r: &Request| {
            let mut out = BytesMut::new();
            r.encode(9, &mut out);
            out.to_vec()
        })
        .collect()
}

#[test]
fn frame_decoder_checks_over_a_seeded_corpus() {
    let mut rng = StdRng::seed_from_u64(seed("frame_decoder_checks_over_a_seeded_corpus"));
    let mut frames = request_frames();
    for r in [
        Response::CreateTopic,
        Response::Error {
            code: ErrorCode::UnknownTopicOrPartition,
            message: Some("no such topic".into()),
        },
    ] {
        frames.push(encode_response(5, &r).to_bytes().to_vec());
    }
    let mut inputs = Vec::new();
    // The first byte is the knob: frame limit and chunk size.
    for (i, f) in frames.iter().enumerate() {
        for knob in [0u8, 1, 16, 255, (i * 37) as u8] {
            inputs.push([&[knob][..], f].concat());
        }
        for d in damaged_copies(f) {
            inputs.push([&[255u8][..], &d].concat());
        }
    }
    inputs.push([&[255u8][..], &frames.concat()].concat());
    inputs.extend(random_inputs(&mut rng, 2000, 200));
    for input in &inputs {
        frame_decoder::run(input);
    }
}

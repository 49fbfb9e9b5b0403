//! The final table, `--json` and `--hdr-dir` output of a workload run.

use std::io::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::run::ExecStats;
use super::spec::WorkloadSpec;
use super::RunArgs;
use crate::error::{Context, Result};
use crate::report::{mb_per_s, Table};

struct Summary {
    count: u64,
    mean: f64,
    q: [u64; 4],
    max: u64,
}

fn summarize(h: &Histogram<u64>) -> Summary {
    if h.is_empty() {
        return Summary {
            count: 0,
            mean: 0.0,
            q: [0; 4],
            max: 0,
        };
    }
    Summary {
        count: h.len(),
        mean: h.mean(),
        q: [0.50, 0.99, 0.999, 0.9999].map(|q| h.value_at_quantile(q)),
        max: h.max(),
    }
}

/// CPU used during (about) the measured window, in cores (1.0 = one core busy).
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub harness: f64,
    /// The embedded broker; `None` when the broker is external (it counts under `others`).
    pub broker: Option<f64>,
    pub others: f64,
}

pub fn report(
    spec: &WorkloadSpec,
    t: &ExecStats,
    args: &RunArgs,
    layout: String,
    cpu: Option<CpuUse>,
) -> Result<()> {
    let window = Duration::from_secs(spec.duration_s);
    let pub_rate = t.acked as f64 / window.as_secs_f64();
    let cons_rate = t.consumed as f64 / window.as_secs_f64();
    let pub_mb = mb_per_s(t.acked_bytes, window);
    let cons_mb = mb_per_s(t.consumed_bytes, window);
    out!("");
    out!(
        "published (acknowledged, sent in the measured window): {pub_rate:.0} msg/s, {pub_mb:.1} MB/s"
    );
    out!("consumed (sent in the measured window): {cons_rate:.0} msg/s, {cons_mb:.1} MB/s");
    out!(
        "totals: sent {}, acknowledged {}, consumed {}, errors {}",
        t.sent_total,
        t.acked_total,
        t.consumed_total,
        t.send_errors
    );
    if let Some(c) = cpu {
        let broker = match c.broker {
            Some(b) => format!("{b:.2}"),
            None => "external (in other processes)".to_string(),
        };
        out!(
            "CPU during the measured window (cores): harness {:.2}, broker {broker}, other processes {:.2}",
            c.harness, c.others
        );
    }
    let scheduled = spec.rate_msgs_per_s > 0;
    let mut rows: Vec<(&str, &Histogram<u64>)> = vec![("publish latency", &t.publish)];
    if scheduled {
        rows.push(("publish latency (from intended)", &t.publish_intended));
        rows.push(("publish delay", &t.publish_delay));
    }
    rows.push(("end-to-end latency", &t.e2e));
    let mut table = Table::new(&[
        "latency µs",
        "n",
        "mean",
        "p50",
        "p99",
        "p99.9",
        "p99.99",
        "max",
    ]);
    let mut json_lat = serde_json::Map::new();
    for (name, h) in &rows {
        let s = summarize(h);
        let mut cells = vec![
            name.to_string(),
            s.count.to_string(),
            format!("{:.0}", s.mean),
        ];
        cells.extend(s.q.iter().map(|v| v.to_string()));
        cells.push(s.max.to_string());
        table.row(cells);
        json_lat.insert(
            name.replace([' ', '(', ')'], "_")
                .trim_matches('_')
                .replace("__", "_"),
            serde_json::json!({
                "count": s.count, "mean_us": s.mean, "p50_us": s.q[0], "p99_us": s.q[1],
                "p99_9_us": s.q[2], "p99_99_us": s.q[3], "max_us": s.max,
            }),
        );
    }
    if !scheduled {
        out!("(rate 0 = as fast as possible: no schedule, so no publish delay)");
    }
    out!("{}", table.render());
    if args.markdown {
        out!("{}", table.render_markdown());
    }
    if let Some(path) = &args.json {
        let v = serde_json::json!({
            "workload": spec,
            "layout": layout,
            "measured_s": spec.duration_s,
            "publish_msgs_per_s": pub_rate,
            "publish_mb_per_s": pub_mb,
            "consume_msgs_per_s": cons_rate,
            "consume_mb_per_s": cons_mb,
            "sent_total": t.sent_total,
            "acked_total": t.acked_total,
            "consumed_total": t.consumed_total,
            "errors": t.send_errors,
            "latency": json_lat,
            "cpu_cores": cpu.map(|c| serde_json::json!({
                "harness": c.harness, "broker": c.broker, "others": c.others,
            })),
        });
        let text = serde_json::to_string_pretty(&v).context("encode JSON")?;
        std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
        out!("results written to {}", path.display());
    }
    if let Some(dir) = &args.hdr_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        for (name, h) in &rows {
            let file = dir.join(format!(
                "{}-{}.hgrm",
                spec.name,
                name.replace([' ', '(', ')'], "-")
                    .replace("--", "-")
                    .trim_matches('-')
            ));
            write_hgrm(h, &file)?;
        }
        out!("percentile distributions written to {}", dir.display());
    }
    Ok(())
}

/// The percentile-distribution text of HdrHistogram's `outputPercentileDistribution` (values
/// in µs, scaling ratio 1), which HdrHistogram's plotter reads.
fn write_hgrm(h: &Histogram<u64>, path: &std::path::Path) -> Result<()> {
    let mut s = String::new();
    s.push_str("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            let q = v.quantile_iterated_to();
            let inv = if q < 1.0 {
                format!("{:.2}", 1.0 / (1.0 - q))
            } else {
                "inf".to_string()
            };
            s.push_str(&format!(
                "{:12.3} {:14.12} {:10} {:>14}\n",
                v.value_iterated_to() as f64,
                q,
                v.count_since_last_iteration(),
                inv
            ));
        }
        s.push_str(&format!(
            "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
            h.mean(),
            h.stdev(),
            h.max() as f64,
            h.len()
        ));
    }
    let mut f =
        std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(s.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

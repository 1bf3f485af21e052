//! Parse rate of the report formats: rows/s and MB/s of a CSV report (Russian layout: `;`,
//! decimal comma, thousands separators) and of the same rows as XLSX, each as a ratio to
//! reading the same bytes once (a checksum pass, plus UTF-8 validation for the CSV) in the
//! same run. A warm-up, then `BENCH_REPS` (default 5) repetitions; median (min–max).
//!
//! `scripts/bench.sh gmail` runs this; `ROWS` (default 200 000) sizes the report.

use std::hint::black_box;
use std::time::Instant;

use zakaz_core::bench::{Spread, reps};

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)))
}

/// (MB/s) of `f` over `bytes`, median of `n` after a warm-up, and the rows it parsed.
fn rate(bytes: &[u8], n: usize, mut f: impl FnMut(&[u8]) -> usize) -> (Spread, usize) {
    let rows = f(bytes);
    let mb = bytes.len() as f64 / 1e6;
    let runs: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            black_box(f(black_box(bytes)));
            mb / t.elapsed().as_secs_f64()
        })
        .collect();
    (Spread::of(&runs), rows)
}

fn main() {
    let rows = zakaz_core::bench::env_u32("ROWS", 200_000) as usize;
    let n = reps(5);
    let cities = ["Москва", "Санкт-Петербург", "Новосибирск", "Казань"];
    let mut csv = String::from("Дата;Событие;Город;Продано билетов;Выручка;Возвраты;Валюта\n");
    let mut sheet = vec![
        [
            "date",
            "event",
            "city",
            "tickets_sold",
            "revenue",
            "refunds",
            "currency",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for i in 0..rows {
        let (rub, kop) = (1_000 + (i * 7919) % 900_000, i % 100);
        let line = [
            format!("{:02}.{:02}.2026", 1 + i % 28, 1 + i % 12),
            format!("Концерт №{}", i % 500),
            cities[i % 4].to_owned(),
            (i % 300).to_string(),
            format!("{} {:03},{kop:02}", rub / 1000, rub % 1000),
            format!("{},{:02}", i % 50, kop),
            "RUB".to_owned(),
        ];
        csv.push_str(&line.join(";"));
        csv.push('\n');
        sheet.push(vec![
            format!("2026-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
            line[1].clone(),
            line[2].clone(),
            line[3].clone(),
            format!("{rub}.{kop:02}"),
            format!("{}.{:02}", i % 50, kop),
            "RUB".to_owned(),
        ]);
    }
    let csv = csv.into_bytes();
    let xlsx = api_sandbox::encode::xlsx(&sheet);

    // The report is larger than any mail's: lift the limits a mail is read under.
    let limits = ingest_gmail::report::Limits {
        attachment_bytes: usize::MAX / 16,
        table_cells: usize::MAX,
        rows: usize::MAX,
    };
    let parse_csv = |b: &[u8]| {
        let parsed =
            ingest_gmail::report::csv(&ingest_gmail::mime::text(b, None), &limits).unwrap();
        assert!(parsed.errors.is_empty(), "{:?}", &parsed.errors[..1]);
        parsed.rows.len()
    };
    let parse_xlsx = |b: &[u8]| {
        let parsed = ingest_gmail::report::xlsx(b, &limits).unwrap();
        assert!(parsed.errors.is_empty(), "{:?}", &parsed.errors[..1]);
        parsed.rows.len()
    };
    let read_csv = |b: &[u8]| {
        std::str::from_utf8(b).unwrap();
        checksum(b) as usize & 1
    };
    let read = |b: &[u8]| checksum(b) as usize & 1;

    println!("ingest-gmail report parsing, {rows} rows");
    for (name, bytes, parse, baseline) in [
        (
            "CSV",
            &csv,
            &parse_csv as &dyn Fn(&[u8]) -> usize,
            &read_csv as &dyn Fn(&[u8]) -> usize,
        ),
        ("XLSX", &xlsx, &parse_xlsx, &read),
    ] {
        let (p, parsed_rows) = rate(bytes, n, parse);
        assert_eq!(parsed_rows, rows);
        let (b, _) = rate(bytes, n, baseline);
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "  {name:<4} {mb:.1} MB: parse {} MB/s = {:.0} rows/s; read the bytes {} MB/s; ratio {:.3}",
            p.show(1),
            p.median / mb * rows as f64,
            b.show(0),
            p.median / b.median
        );
    }
}

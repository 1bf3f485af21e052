//! Parse rate of the report formats: rows/s and MB/s of a CSV report (Russian layout: `;`,
//! decimal comma, thousands separators) and of the same rows as XLSX, each as a ratio to
//! reading the same bytes once (a checksum pass, plus UTF-8 validation for the CSV) in the
//! same run. A warm-up of each, then `BENCH_REPS` (default 5) repetitions, each running the
//! four sides (parse and read, each format) in an order rotated by one every repetition;
//! each figure printed as `bench gmail <figure> <median> (<min>–<max>) n=<n>`.
//!
//! `scripts/bench.sh gmail` runs this; `ROWS` (default 200 000) sizes the report.

use std::hint::black_box;
use std::time::Instant;

use zakaz_core::bench::{figure, ratio, reps};

fn checksum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(u64::from(*b)))
}

/// MB/s of one run of `f` over `bytes`.
fn once(bytes: &[u8], f: &dyn Fn(&[u8]) -> usize) -> f64 {
    let t = Instant::now();
    black_box(f(black_box(bytes)));
    bytes.len() as f64 / 1e6 / t.elapsed().as_secs_f64()
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

    println!(
        "ingest-gmail report parsing, {rows} rows: CSV {:.1} MB, XLSX {:.1} MB; {n} repetitions, the four sides in rotating order",
        csv.len() as f64 / 1e6,
        xlsx.len() as f64 / 1e6
    );
    // Sides: parse and read each format, interleaved; one warm-up run of each.
    type Side<'a> = (&'a [u8], &'a dyn Fn(&[u8]) -> usize);
    let sides: [Side; 4] = [
        (&csv, &parse_csv),
        (&csv, &read_csv),
        (&xlsx, &parse_xlsx),
        (&xlsx, &read),
    ];
    assert_eq!(parse_csv(&csv), rows);
    assert_eq!(parse_xlsx(&xlsx), rows);
    for (bytes, f) in sides {
        once(bytes, f);
    }
    let mut rates: [Vec<f64>; 4] = Default::default();
    for rep in 0..n {
        for side in zakaz_core::bench::rotation(rep, 4) {
            let (bytes, f) = sides[side];
            rates[side].push(once(bytes, f));
        }
    }
    const NAME: &str = "gmail";
    for (i, (format, bytes)) in [("csv", &csv), ("xlsx", &xlsx)].into_iter().enumerate() {
        let (parse, read) = (&rates[2 * i], &rates[2 * i + 1]);
        let rows_per_mb = rows as f64 / (bytes.len() as f64 / 1e6);
        figure(NAME, &format!("{format}_parse_mb_per_s"), parse, 1);
        figure(
            NAME,
            &format!("{format}_parse_rows_per_s"),
            &parse.iter().map(|r| r * rows_per_mb).collect::<Vec<_>>(),
            0,
        );
        figure(NAME, &format!("{format}_read_mb_per_s"), read, 0);
        ratio(NAME, &format!("{format}_parse_vs_read"), parse, read, 3);
    }
}

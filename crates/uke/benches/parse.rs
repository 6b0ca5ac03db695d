//! Parse-only and parse+map rates over a generated 医科 UKE file (records/s).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn rec(fields: &[&str], total: usize) -> String {
    let mut v: Vec<String> = fields.iter().map(|s| (*s).to_owned()).collect();
    v.resize(total.max(fields.len()), String::new());
    v.join(",")
}

/// 2,000 synthetic receipts of 12 records each, as a レセコン would write them.
fn generated() -> (Vec<u8>, usize) {
    let mut lines = vec![rec(&["IR", "1", "13", "1", "8814790", "", "むすび内科クリニック", "202405", "00", ""], 10)];
    let mut ho = 0;
    for i in 1..=2000 {
        let no = i.to_string();
        let karte = format!("K{i:06}");
        let mut re = vec![String::new(); 38];
        for (j, s) in ["RE", &no, "1112", "202405", "架空　太郎", "1", "19700401"].iter().enumerate() {
            re[j] = (*s).to_owned();
        }
        re[13] = karte;
        re[36] = "カクウ　タロウ".into();
        lines.push(re.join(","));
        lines.push(rec(&["HO", "06139999", "１２", &format!("{i}"), "2", "465"], 15));
        ho += 1;
        lines.push(rec(&["SN", "1", "01", "06139999", "１２", &format!("{i}"), "01"], 9));
        lines.push(rec(&["SY", "8848176", "20240501", "1", "", "", "01", ""], 8));
        lines.push(rec(&["SY", "8849692", "20240401", "1", "", "", "", ""], 8));
        for code in ["112007410", "120001210", "160008010"] {
            let mut si = vec![String::new(); 44];
            for (j, s) in ["SI", "12", "", code, "", "73", "1"].iter().enumerate() {
                si[j] = (*s).to_owned();
            }
            si[13 + 6] = "1".into();
            lines.push(si.join(","));
        }
        let mut iy = vec![String::new(); 44];
        for (j, s) in ["IY", "21", "", "620007880", "3", "12", "14"].iter().enumerate() {
            iy[j] = (*s).to_owned();
        }
        iy[13 + 6] = "14".into();
        lines.push(iy.join(","));
        lines.push(rec(&["CO", "21", "", "810000001", "食後"], 5));
        lines.push(rec(&["TO", "40", "", "700010000", "1", "10", "1"], 48));
    }
    lines.push(rec(&["GO", &ho.to_string(), &(465 * ho).to_string(), "99"], 4));
    let n = lines.len();
    let mut text = lines.join("\r\n");
    text.push_str("\r\n");
    let (b, _, _) = encoding_rs::SHIFT_JIS.encode(&text);
    let mut bytes = b.into_owned();
    bytes.push(0x1a);
    (bytes, n)
}

fn bench(c: &mut Criterion) {
    let (bytes, records) = generated();
    let mut g = c.benchmark_group("uke");
    g.sample_size(10);
    g.throughput(Throughput::Elements(records as u64));
    g.bench_function("parse (records)", |b| b.iter(|| musubi_uke::parse("bench.UKE", &bytes).records));
    g.bench_function("collect: parse+map (records)", |b| {
        b.iter(|| musubi_uke::collect("bench.UKE", &bytes, None).map(|f| f.receipts.len()).unwrap_or(0))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

#!/usr/bin/env python3
"""Splink (DuckDB backend) on the records Musubi's matcher links, for a side-by-side comparison.

Input: the CSV written by `mpi-eval --export-csv FILE` — one row per source patient with the
values *after* Musubi's normalization (folded kanji, katakana and phonetic kana, canonical
address parts, phone digits, insurance match keys) and the true person. Splink therefore sees
the same cleaned inputs; what is compared is the model, training, blocking and clustering.

Configured to be fair to Splink:
- comparisons mirror Musubi's levels on the same columns (exact kanji with term-frequency
  adjustment, exact kana, phonetic kana with TF, one-edit kana/kanji, Damerau–Levenshtein ≤ 1 on
  the birth date for a transposition or one wrong digit, address at four granularities, postal
  code and its area, any phone in common, insurance identity and household);
- the same prediction blocking rules as Musubi's index;
- trained as Splink's documentation recommends: λ from deterministic rules, u by random sampling
  (10^7 pairs), m by EM in two blocks (birth date; kana name);
- clustered with connected components at every match-weight threshold of a sweep (−4 to 48),
  and the best F1 against the truth is reported (Musubi uses its fixed default thresholds).

Timing covers loading, training, prediction and one clustering; the sweep's extra clusterings
and the scoring against truth are not timed.

Usage: splink_compare.py records.csv [--threads N]
"""

import argparse
import json
import os
import resource
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--u-pairs", type=float, default=1e7)
    args = ap.parse_args()

    import duckdb
    import splink
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    t0 = time.perf_counter()
    con = duckdb.connect()

    def run(sql: str, params=None) -> list:
        # DuckDB 2 wants every result consumed before the next statement.
        return con.execute(sql, params or []).fetchall()

    run(f"SET threads = {args.threads}")
    run(
        "CREATE TABLE records AS SELECT * FROM read_csv(?, header = true, all_varchar = true, nullstr = '')",
        [args.csv],
    )
    run("ALTER TABLE records RENAME COLUMN key TO unique_id")
    run("CREATE TABLE truth AS SELECT unique_id, person FROM records")
    n = run("SELECT count(*) FROM records")[0][0]
    db_api = DuckDBAPI(connection=con)
    df = db_api.register("records")

    def name_comparison(part: str) -> cl.CustomComparison:
        k, kana, phon = f"{part}_kanji", f"{part}_kana", f"{part}_phon"
        return cl.CustomComparison(
            output_column_name=f"{part}_name",
            comparison_levels=[
                {
                    "sql_condition": f"({k}_l IS NULL OR {k}_r IS NULL) AND ({phon}_l IS NULL OR {phon}_r IS NULL)",
                    "label_for_charts": "missing",
                    "is_null_level": True,
                },
                cll.ExactMatchLevel(k, term_frequency_adjustments=True),
                cll.ExactMatchLevel(kana),
                cll.ExactMatchLevel(phon, term_frequency_adjustments=True),
                cll.LevenshteinLevel(kana, 1),
                cll.LevenshteinLevel(k, 1),
                cll.ElseLevel(),
            ],
        )

    phone_any = (
        "phone_l = phone_r OR phone_l = phone2_r OR phone2_l = phone_r OR phone2_l = phone2_r"
    )
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            name_comparison("family"),
            name_comparison("given"),
            cl.CustomComparison(
                output_column_name="birth_date",
                comparison_levels=[
                    cll.NullLevel("birth_date"),
                    cll.ExactMatchLevel("birth_date"),
                    cll.DamerauLevenshteinLevel("birth_date", 1),
                    cll.ElseLevel(),
                ],
            ),
            cl.ExactMatch("sex"),
            cl.CustomComparison(
                output_column_name="address",
                comparison_levels=[
                    cll.NullLevel("prefecture"),
                    cll.ExactMatchLevel("address"),
                    cll.ExactMatchLevel("town"),
                    cll.ExactMatchLevel("city"),
                    cll.ExactMatchLevel("prefecture"),
                    cll.ElseLevel(),
                ],
            ),
            cl.CustomComparison(
                output_column_name="postal_code",
                comparison_levels=[
                    cll.NullLevel("postal_code"),
                    cll.ExactMatchLevel("postal_code"),
                    cll.CustomLevel("substr(postal_code_l, 1, 3) = substr(postal_code_r, 1, 3)", "same area"),
                    cll.ElseLevel(),
                ],
            ),
            cl.CustomComparison(
                output_column_name="phone",
                comparison_levels=[
                    cll.NullLevel("phone"),
                    cll.CustomLevel(phone_any, "a phone in common"),
                    cll.ElseLevel(),
                ],
            ),
            cl.CustomComparison(
                output_column_name="insurance",
                comparison_levels=[
                    cll.NullLevel("insurance"),
                    cll.ExactMatchLevel("insurance"),
                    cll.ExactMatchLevel("insurance_household"),
                    cll.ElseLevel(),
                ],
            ),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("birth_date", "given_phon"),
            block_on("birth_date", "given_kanji"),
            block_on("birth_date", "family_phon"),
            block_on("birth_date", "family_kanji"),
            block_on("birth_date", "postal_code"),
            block_on("family_phon", "given_phon"),
            block_on("family_kanji", "given_kanji"),
            # One rule per column pair: an OR in a blocking rule defeats DuckDB's hash join.
            block_on("phone"),
            "l.phone = r.phone2",
            "l.phone2 = r.phone",
            block_on("phone2"),
            block_on("insurance_household"),
            block_on("given_phon", "postal_code"),
        ],
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = Linker(df, settings)
    t_load = time.perf_counter() - t0

    t = time.perf_counter()
    linker.training.estimate_probability_two_random_records_match(
        [
            block_on("insurance"),
            block_on("family_kanji", "given_kanji", "birth_date", "address"),
        ],
        recall=0.9,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=args.u_pairs, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("birth_date"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("family_phon", "given_phon"))
    t_train = time.perf_counter() - t

    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_weight=-4)
    run(f"CREATE TABLE pred AS SELECT unique_id_l, unique_id_r FROM {pred.physical_name}")
    n_pairs = run("SELECT count(*) FROM pred")[0][0]
    t_predict = time.perf_counter() - t

    def score(clusters_table: str) -> dict:
        q = f"""
        WITH j AS (SELECT c.cluster_id, t.person FROM {clusters_table} c JOIN truth t USING (unique_id)),
        p AS (SELECT sum(n * (n - 1) / 2) AS v FROM (SELECT count(*) AS n FROM j GROUP BY cluster_id)),
        tr AS (SELECT sum(n * (n - 1) / 2) AS v FROM (SELECT count(*) AS n FROM j GROUP BY person)),
        c AS (SELECT sum(n * (n - 1) / 2) AS v FROM (SELECT count(*) AS n FROM j GROUP BY cluster_id, person))
        SELECT p.v, tr.v, c.v FROM p, tr, c
        """
        pp, tp, cp = run(q)[0]
        precision = cp / pp if pp else 1.0
        recall = cp / tp if tp else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "predicted_pairs": pp, "true_pairs": tp}

    results = []
    t_cluster_one = None
    for th in [-4, 0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48]:
        t = time.perf_counter()
        clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(pred, threshold_match_weight=th)
        elapsed = time.perf_counter() - t
        if t_cluster_one is None:
            t_cluster_one = elapsed
        s = score(clusters.physical_name)
        s["threshold"] = th
        s["cluster_seconds"] = elapsed
        results.append(s)
        print(
            f"  weight ≥ {th:>3}: precision {s['precision']:.5f} recall {s['recall']:.5f} F1 {s['f1']:.5f} ({elapsed:.1f} s)",
            flush=True,
        )
    best = max(results, key=lambda r: r["f1"])
    wall = t_load + t_train + t_predict + best["cluster_seconds"]
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "splink": splink.__version__,
        "duckdb": duckdb.__version__,
        "records": n,
        "threads": args.threads,
        "pairs_scored_above_weight_-4": n_pairs,
        "seconds": {"load": t_load, "train": t_train, "predict": t_predict, "cluster": best["cluster_seconds"], "total": wall},
        "best": best,
        "peak_rss_mib": peak_mib,
        "lambda": linker._settings_obj._probability_two_random_records_match,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

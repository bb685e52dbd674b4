//! Metrics against hand-worked and published examples (scikit-learn / scipy documentation,
//! the SQuAD evaluation script), and invariants (proptest).

use ember_eval::*;
use proptest::prelude::*;

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b}");
}

#[test]
fn precision_recall_f1_match_scikit_learns_documented_example() {
    // sklearn.metrics.precision_recall_fscore_support docs: y_true = [0,1,2,0,1,2],
    // y_pred = [0,2,1,0,0,1] → macro (0.222, 0.333, 0.267), micro (0.333, 0.333, 0.333),
    // weighted (0.222, 0.333, 0.267).
    let mut cm = ConfusionMatrix::new(3).unwrap();
    cm.update(&[0, 2, 1], &[0, 1, 2]).unwrap();
    cm.update(&[0, 0, 1], &[0, 1, 2]).unwrap();
    let m = cm.prf(Average::Macro).unwrap();
    close(m.precision, 2.0 / 9.0, 1e-12);
    close(m.recall, 1.0 / 3.0, 1e-12);
    close(m.f1, 4.0 / 15.0, 1e-12);
    let mi = cm.prf(Average::Micro).unwrap();
    close(mi.f1, 1.0 / 3.0, 1e-12);
    let w = cm.prf(Average::Weighted).unwrap();
    close(w.precision, 2.0 / 9.0, 1e-12);
    close(w.f1, 4.0 / 15.0, 1e-12);
    assert_eq!(cm.class(0), Prf { precision: 2.0 / 3.0, recall: 1.0, f1: 0.8 });
    assert_eq!(cm.class(1).f1, 0.0);
    assert_eq!((cm.count(0, 0), cm.count(7, 0)), (2, 0), "out-of-range indices count nothing");
    assert!(matches!(cm.update(&[3], &[0]), Err(EvalError::InvalidClass { class: 3, classes: 3, .. })));
    assert!(matches!(ConfusionMatrix::new(1), Err(EvalError::InvalidConfig { .. })));
}

#[test]
fn mcc_matches_the_binary_formula_and_scikit_learns_example() {
    // sklearn.metrics.matthews_corrcoef docs: y_true = [+1,+1,+1,-1], y_pred = [+1,-1,+1,+1] → -0.333…
    let mut cm = ConfusionMatrix::new(2).unwrap();
    cm.update(&[1, 0, 1, 1], &[1, 1, 1, 0]).unwrap();
    close(cm.mcc().unwrap(), -1.0 / 3.0, 1e-12);
    // Binary formula by hand: tp 20, tn 15, fp 5, fn 10.
    let mut cm = ConfusionMatrix::new(2).unwrap();
    let (mut p, mut l) = (Vec::new(), Vec::new());
    for (pred, label, n) in [(1, 1, 20), (0, 0, 15), (1, 0, 5), (0, 1, 10)] {
        p.extend(std::iter::repeat_n(pred, n));
        l.extend(std::iter::repeat_n(label, n));
    }
    cm.update(&p, &l).unwrap();
    let want = (20.0 * 15.0 - 5.0 * 10.0) / ((25.0f64) * 30.0 * 20.0 * 25.0).sqrt();
    close(cm.mcc().unwrap(), want, 1e-12);
    // All predictions in one class: defined as 0.
    let mut cm = ConfusionMatrix::new(2).unwrap();
    cm.update(&[1, 1, 1], &[0, 1, 0]).unwrap();
    assert_eq!(cm.mcc().unwrap(), 0.0);
}

#[test]
fn accuracy_and_top_k() {
    let mut a = Accuracy::new();
    a.update(&[1, 2, 3], &[1, 2, 0]).unwrap();
    a.update(&[0], &[0]).unwrap();
    close(a.value().unwrap(), 0.75, 1e-12);
    let mut t = TopKAccuracy::new(2).unwrap();
    // Row 0: label 2 ranks 2nd; row 1: label 0 ranks 3rd; row 2: tie, lower index first → label 1 is 2nd.
    t.update(&[0.1, 0.9, 0.5, 0.1, 0.3, 0.2, 0.4, 0.4, 0.4], 3, &[2, 0, 1]).unwrap();
    close(t.value().unwrap(), 2.0 / 3.0, 1e-12);
    assert!(matches!(a.update(&[1], &[1, 2]), Err(EvalError::LengthMismatch { .. })));
    assert!(matches!(Accuracy::new().value(), Err(EvalError::Empty(_))));
    assert!(matches!(TopKAccuracy::new(0), Err(EvalError::InvalidConfig { .. })));
}

#[test]
fn correlations_match_scipy() {
    // scipy.stats.spearmanr([1,2,3,4,5], [5,6,7,8,7]) = 0.8207826816681233 (docs example, ties).
    let mut c = Correlation::new();
    c.update(&[1.0, 2.0, 3.0, 4.0, 5.0], &[5.0, 6.0, 7.0, 8.0, 7.0]).unwrap();
    close(c.spearman().unwrap(), 0.8207826816681233, 1e-12);
    // Pearson by hand: x = [1,2,3], y = [1,3,2] → r = 0.5.
    let mut p = Correlation::new();
    p.update(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]).unwrap();
    close(p.pearson().unwrap(), 0.5, 1e-12);
    assert_eq!(average_ranks(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
    let mut k = Correlation::new();
    k.update(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap();
    assert!(matches!(k.pearson(), Err(EvalError::Constant(_))));
    assert!(matches!(k.spearman(), Err(EvalError::Constant(_))));
    assert!(matches!(Correlation::new().pearson(), Err(EvalError::Empty(_))));
}

#[test]
fn perplexity_from_logits_and_nll() {
    let mut p = Perplexity::new();
    // Uniform logits over 4 tokens: perplexity 4; the ignored position does not count.
    p.update_logits(&[0.0; 12], 4, &[1, -100, 3], Some(-100)).unwrap();
    close(p.value().unwrap(), 4.0, 1e-12);
    assert_eq!(p.tokens(), 2);
    let mut q = Perplexity::new();
    q.add_nll(2.0 * 2f64.ln(), 2).unwrap();
    close(q.value().unwrap(), 2.0, 1e-12);
    // Huge logits stay finite.
    let mut h = Perplexity::new();
    h.update_logits(&[1e4, 0.0], 2, &[0], None).unwrap();
    close(h.value().unwrap(), 1.0, 1e-12);
    assert!(matches!(p.update_logits(&[0.0; 4], 4, &[7], None), Err(EvalError::InvalidClass { .. })));
    assert!(matches!(Perplexity::new().value(), Err(EvalError::Empty(_))));
}

#[test]
fn squad_normalization_and_scores() {
    assert_eq!(normalize_answer("The  Eiffel-Tower!"), "eiffeltower");
    assert_eq!(normalize_answer("an apple a day, the end"), "apple day end");
    assert_eq!(normalize_answer("Theory of a"), "theory of");
    assert_eq!(exact_match("the Denver Broncos", "Denver Broncos"), 1.0);
    // Overlap 2 of 3 predicted and 2 of 2 gold tokens: P = 2/3, R = 1, F1 = 0.8.
    close(token_f1("Denver Broncos team", "Denver Broncos"), 0.8, 1e-12);
    assert_eq!(token_f1("", "Denver"), 0.0);
    let mut m = SquadMetric::new();
    m.update("Broncos", &["Denver Broncos", "Broncos"]).unwrap();
    m.update("Carolina", &["Panthers"]).unwrap();
    let (em, f1) = m.value().unwrap();
    close(em, 0.5, 1e-12);
    close(f1, 0.5, 1e-12);
    assert!(matches!(m.update("x", &[]), Err(EvalError::Empty(_))));
}

#[test]
fn multirc_em_and_f1a() {
    let mut m = MultiRc::new();
    m.update(&[true, false, true], &[true, false, true]).unwrap(); // exact
    m.update(&[true, true], &[false, true]).unwrap(); // one false positive
    m.update(&[false], &[true]).unwrap(); // one false negative
    let (em, f1a) = m.value().unwrap();
    close(em, 1.0 / 3.0, 1e-12);
    // tp 3, fp 1, fn 1 → 6 / 8.
    close(f1a, 0.75, 1e-12);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn f1_is_a_fraction_and_mcc_is_symmetric(pairs in proptest::collection::vec((0usize..3, 0usize..3), 1..60)) {
        let (p, l): (Vec<usize>, Vec<usize>) = pairs.into_iter().unzip();
        let mut a = ConfusionMatrix::new(3).unwrap();
        a.update(&p, &l).unwrap();
        let mut b = ConfusionMatrix::new(3).unwrap();
        b.update(&l, &p).unwrap();
        for avg in [Average::Macro, Average::Micro, Average::Weighted, Average::Binary { positive: 1 }] {
            let f = a.prf(avg).unwrap();
            prop_assert!((0.0..=1.0).contains(&f.f1) && (0.0..=1.0).contains(&f.precision) && (0.0..=1.0).contains(&f.recall));
        }
        prop_assert!((a.mcc().unwrap() - b.mcc().unwrap()).abs() < 1e-12);
        prop_assert!((-1.0..=1.0).contains(&a.mcc().unwrap()));
        let mut acc = Accuracy::new();
        acc.update(&p, &l).unwrap();
        prop_assert!((a.prf(Average::Micro).unwrap().f1 - acc.value().unwrap()).abs() < 1e-12);
    }

    #[test]
    fn spearman_is_invariant_under_monotone_transforms(xs in proptest::collection::vec(-5.0f64..5.0, 3..40), ys in proptest::collection::vec(-5.0f64..5.0, 40)) {
        let ys = &ys[..xs.len()];
        let mut c = Correlation::new();
        c.update(&xs, ys).unwrap();
        let mut t = Correlation::new();
        let tx: Vec<f64> = xs.iter().map(|x| x * x * x + x.exp()).collect();
        t.update(&tx, ys).unwrap();
        match (c.spearman(), t.spearman()) {
            (Ok(a), Ok(b)) => prop_assert!((a - b).abs() < 1e-9 && (-1.0..=1.0).contains(&a)),
            (Err(_), Err(_)) => {}
            (a, b) => prop_assert!(false, "{:?} vs {:?}", a, b),
        }
    }
}

#[test]
fn percentiles_match_numpy_and_the_harness_counts_calls() {
    let v: Vec<f64> = (1..=10).map(f64::from).collect();
    // numpy.percentile(range(1, 11), [50, 90, 99]) = [5.5, 9.1, 9.91]
    for (q, want) in [(50.0, 5.5), (90.0, 9.1), (99.0, 9.91), (0.0, 1.0), (100.0, 10.0)] {
        close(percentile(&v, q).unwrap(), want, 1e-12);
    }
    assert!(matches!(percentile(&[], 50.0), Err(EvalError::Empty(_))));
    assert!(matches!(percentile(&v, 101.0), Err(EvalError::InvalidConfig { .. })));
    let mut calls = 0;
    let config = LatencyConfig {
        warmup: 3,
        min_iterations: 7,
        max_iterations: 7,
        min_time: std::time::Duration::from_secs(60),
        items_per_call: 4,
        tokens_per_call: 128,
        threads: 2,
    };
    let r = measure("noop", &config, || calls += 1).unwrap();
    assert_eq!((calls, r.iterations, r.threads), (10, 7, 2));
    assert!(r.p50_ms <= r.p90_ms && r.p90_ms <= r.p99_ms && r.min_ms <= r.p50_ms);
    let s = summarize("fixed", vec![2.0, 4.0, 6.0], &config);
    close(s.items_per_s, 1000.0, 1e-9);
    close(s.tokens_per_s, 32000.0, 1e-9);
    let md = LatencyReport::markdown(std::slice::from_ref(&s));
    assert!(md.contains("| fixed | 2 | 3 | 4.000 |"), "{md}");
    let back: LatencyReport = serde_json::from_str(&s.to_json()).unwrap();
    assert_eq!(back, s);
    let bad = LatencyConfig { min_iterations: 0, ..LatencyConfig::default() };
    assert!(matches!(measure("x", &bad, || ()), Err(EvalError::InvalidConfig { .. })));
}

#[test]
fn the_report_writes_markdown_json_and_valid_svg() {
    let model = EnergyModel::horowitz_45nm();
    // 1 M f32 MACs = 4.6 µJ; 1 M int8 MACs = 0.3 µJ; 1 MB from DRAM = 243.75 µJ.
    close(model.estimate_mj(1_000_000, 0, 0), 4.6e-3, 1e-12);
    close(model.estimate_mj(0, 1_000_000, 1_000_000), 0.3e-3 + 243.75e-3, 1e-12);
    let rows = vec![
        StageRow::new("dense", 110_000_000, 440_000_000, "accuracy", 0.91, 20.0, 300.0).with_energy(100.0),
        StageRow::new("distilled", 66_000_000, 264_000_000, "accuracy", 0.90, 10.0, 150.0),
        StageRow::new("int8 <&>", 66_000_000, 70_000_000, "accuracy", 0.895, 4.0, 40.0),
    ];
    let report = CompressionReport::new(rows).unwrap();
    assert_eq!((report.rows[1].speedup_b1, report.rows[2].speedup_b32), (2.0, 7.5));
    let md = report.to_markdown();
    assert!(md.contains("| distilled | 66000000 | 264.00 | accuracy | 0.9000 |"), "{md}");
    let back: CompressionReport = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
    assert!(!report.to_json().contains("floor") && !md.contains("× floor"));
    let fields = serde_json::to_value(&report.rows[0]).unwrap();
    for f in [
        "stage",
        "params",
        "bytes",
        "metric",
        "metric_value",
        "latency_p50_ms_b1",
        "latency_p50_ms_b32",
        "speedup_b1",
        "speedup_b32",
        "energy_mj_est",
    ] {
        assert!(fields.get(f).is_some(), "{f}");
    }
    #[cfg(feature = "plot")]
    {
        let svg = report.to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("valid XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(doc.descendants().filter(|n| n.tag_name().name() == "circle").count() >= 3);
    }
    let dir = std::env::temp_dir().join(format!("ember-eval-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    report.write(&dir, "run").unwrap();
    for ext in ["md", "json"] {
        assert!(dir.join(format!("run.{ext}")).metadata().unwrap().len() > 0);
    }
    // The plot is written exactly when the `plot` feature is on.
    assert_eq!(dir.join("run.svg").exists(), cfg!(feature = "plot"));
    let _ = std::fs::remove_dir_all(&dir);

    // A floor: a ratio column, a closing line, a JSON key and a line in the plot.
    let floored = report.clone().with_floor("human agreement", 0.95).unwrap();
    let md = floored.to_markdown();
    assert!(md.contains("| × floor |") && md.contains("| 0.947× |"), "{md}"); // 0.90 / 0.95
    assert!(md.contains("human agreement: accuracy = 0.9500"), "{md}");
    let back: CompressionReport = serde_json::from_str(&floored.to_json()).unwrap();
    assert_eq!(back.floor.unwrap().value, 0.95);
    #[cfg(feature = "plot")]
    {
        let svg = floored.to_svg().unwrap();
        let doc = roxmltree::Document::parse(&svg).expect("valid XML");
        assert!(doc.descendants().any(|n| n.text().is_some_and(|t| t.contains("human agreement"))));
    }
    assert!(report.clone().with_floor("x", f64::INFINITY).is_err());
    assert!(matches!(CompressionReport::new(vec![]), Err(EvalError::Empty(_))));
    let bad = StageRow::new("x", 1, 1, "acc", 0.5, 0.0, 1.0);
    assert!(matches!(CompressionReport::new(vec![bad]), Err(EvalError::NonFinite(_))));
}

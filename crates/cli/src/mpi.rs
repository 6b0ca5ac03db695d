//! `musubi mpi …`: rebuild the master patient index, print the links, score them against a
//! truth file, list the review queue.

use anyhow::{Context, Result};
use musubi_service::Service;

use crate::operator;

use crate::MpiCommand;

fn err(e: musubi_service::ApiError) -> anyhow::Error {
    anyhow::anyhow!(musubi_service::import::describe(&e))
}

pub fn run(cmd: MpiCommand) -> Result<()> {
    match cmd {
        MpiCommand::Rebuild { store } => {
            let svc = Service::new(store.open()?, "cli");
            let t = std::time::Instant::now();
            let (records, persons, review) = svc.mpi_rebuild(&operator()).map_err(err)?;
            eprintln!(
                "mpi rebuild: {records} source patients → {persons} persons, {review} pairs to review, {:.1} s",
                t.elapsed().as_secs_f64()
            );
            Ok(())
        }
        MpiCommand::Links { store, format } => {
            anyhow::ensure!(format == "csv", "only --format csv is supported");
            let svc = Service::new(store.open()?, "cli");
            print!("{}", svc.mpi_links_csv(&operator()).map_err(err)?);
            Ok(())
        }
        MpiCommand::Evaluate { store, truth } => {
            let svc = Service::new(store.open()?, "cli");
            let links = svc.mpi_links_csv(&operator()).map_err(err)?;
            let truth_bytes = std::fs::read(&truth).with_context(|| format!("cannot read {}", truth.display()))?;
            let truth = musubi_identify::eval::parse_truth(&truth_bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", truth.display()))?;
            let predicted =
                musubi_identify::eval::parse_truth(links.as_bytes()).map_err(|e| anyhow::anyhow!("links: {e}"))?;
            let s = musubi_identify::eval::pairwise(predicted.iter().map(|(k, v)| (k, v.as_str())), &truth);
            println!("records scored\t{}", s.records);
            println!("missing in truth\t{}", s.missing_in_truth);
            println!("missing in links\t{}", s.missing_in_prediction);
            println!("predicted pairs\t{}", s.predicted_pairs);
            println!("true pairs\t{}", s.true_pairs);
            println!("correct pairs\t{}", s.correct_pairs);
            println!("precision\t{:.4}", s.precision);
            println!("recall\t{:.4}", s.recall);
            println!("F1\t{:.4}", s.f1);
            Ok(())
        }
        MpiCommand::Review { store } => {
            let svc = Service::new(store.open()?, "cli");
            for item in svc.mpi_review_queue(&operator()).map_err(err)? {
                println!(
                    "{}\t{:.2}\t{}\t{}|{}\t{}|{}",
                    item.id, item.weight, item.hold, item.a.facility, item.a.local_id, item.b.facility, item.b.local_id
                );
            }
            Ok(())
        }
    }
}

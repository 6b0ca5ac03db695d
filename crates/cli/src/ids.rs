//! `musubi ids rekey`: moves collected resources stored under the collectors' deterministic ids
//! (UUID v5 of the facility code and patient number: anyone can compute them) to the keyed ids
//! new collections get, in one transaction (`musubi_service::ids`, `musubi_store::rekey`).
//!
//! ```sh
//! # every server and collector of the store stopped
//! musubi ids rekey --data /srv/musubi-data [--id-key /srv/musubi-id.key]
//! ```

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use musubi_service::Service;
use musubi_service::ids::IdKey;

use crate::StoreArgs;

/// `musubi ids …`.
#[derive(Subcommand)]
pub(crate) enum IdsCommand {
    /// Move the collected resources still stored under deterministic (computable) ids to keyed
    /// ids, with every reference to them, in one transaction. Stop every server and collector
    /// of the store first. The audit log is not rewritten: queries by patient follow the moves.
    /// A second run changes nothing.
    Rekey {
        #[command(flatten)]
        store: StoreArgs,
        /// Create the key file when there is none. Without it a missing key is an error: a key
        /// made by mistake (a wrong path) would give this store ids no server of the network
        /// can compute.
        #[arg(long)]
        create_key: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

pub(crate) fn run(cmd: IdsCommand) -> Result<()> {
    match cmd {
        IdsCommand::Rekey { store, create_key, quiet } => {
            let path = store.id_key.clone().unwrap_or_else(|| IdKey::default_path(&store.data));
            if !create_key && !path.exists() {
                bail!(
                    "収集リソース用の鍵 {} がありません。ネットワークのサーバーと同じ鍵を --id-key（または MUSUBI_ID_KEY）で指定してください（新しく作るときは --create-key）",
                    path.display()
                );
            }
            let key = crate::load_id_key(Some(&path), &store.data)?;
            let svc = Service::new(store.open()?, "cli").with_id_key(key);
            let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} 版 {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let b = bar.clone();
            let t = std::time::Instant::now();
            let report = svc
                .rekey_ids(&crate::operator(), move |done, total| {
                    b.set_length(total);
                    b.set_position(done);
                })
                .map_err(|e| anyhow!("{}", musubi_service::import::describe(&e)))?;
            bar.finish_and_clear();
            let secs = t.elapsed().as_secs_f64();
            tracing::info!(
                moved = report.moved,
                versions_rewritten = report.versions_rewritten,
                versions_seen = report.versions_seen,
                seconds = secs,
                rows = ?report.rows,
                "rekeyed collected resources"
            );
            if report.moved == 0 && report.versions_rewritten == 0 {
                eprintln!(
                    "ID の付け替え: 付け替えの必要なリソースはありません（{} 版を確認, {secs:.1} 秒）",
                    report.versions_seen
                );
            } else {
                eprintln!(
                    "ID の付け替え: 収集リソース {} 件を推測できない ID に移しました（{} 版のうち {} 版の参照を書き換え, {secs:.1} 秒）。監査ログは書き換えず、付け替えの記録（id_rekeyed）から旧 ID の記録も患者ごとに検索できます。",
                    report.moved, report.versions_seen, report.versions_rewritten
                );
            }
            Ok(())
        }
    }
}

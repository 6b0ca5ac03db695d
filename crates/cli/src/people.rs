//! `musubi facility …` and `musubi user …`: the operator's console on the command line.

use anyhow::{Context, Result};
use musubi_service::Service;
use musubi_service::people::NewUser;

use crate::operator;

use crate::{FacilityCommand, UserCommand};

pub fn facility(cmd: FacilityCommand) -> Result<()> {
    match cmd {
        FacilityCommand::Add { store, code, name, class, area, area_name, city } => {
            let code_parsed: musubi_domain::FacilityCode = code.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
            let s = store.open()?;
            let svc = Service::new(s, "cli");
            let row = musubi_store::FacilityRow {
                code: code.clone(),
                name,
                class,
                prefecture: i64::from(code_parsed.prefecture()),
                area,
                area_name,
                discloses: true,
                views: true,
            };
            svc.register_facility(&operator(), row, city)
                .map_err(|e| anyhow::anyhow!("{}", musubi_service::import::describe(&e)))?;
            eprintln!("施設 {code} を登録しました");
            Ok(())
        }
        FacilityCommand::List { store } => {
            for f in store.open()?.read(|r| r.facilities())? {
                println!("{}\t{}\t{}\t{}\t{}", f.code, f.class, f.area, f.area_name, f.name);
            }
            Ok(())
        }
    }
}

fn describe(e: musubi_service::ApiError) -> anyhow::Error {
    anyhow::anyhow!("{}", musubi_service::import::describe(&e))
}

pub fn user(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add { store, login, name, kana, profession, facility, password_file, self_enrol } => {
            let password = std::fs::read_to_string(&password_file)
                .with_context(|| format!("cannot read {}", password_file.display()))?;
            let profession = profession.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let svc = store.service("cli")?;
            let new = NewUser {
                login: login.clone(),
                name,
                kana,
                profession,
                facilities: facility,
                password: password.trim_end_matches(['\n', '\r']).to_owned(),
            };
            if self_enrol {
                svc.create_user_self_enrolling(&operator(), new).map_err(describe)?;
                eprintln!("利用者 {login} を作成しました。初回ログイン時に本人が認証アプリを登録します。");
                return Ok(());
            }
            let out = svc.create_user(&operator(), new).map_err(describe)?;
            eprintln!(
                "利用者 {login} を作成しました。認証アプリに次の URI を登録してください（この表示の後は再表示できません）:"
            );
            println!("{}", out.totp_uri);
            Ok(())
        }
        UserCommand::AddOperator { store, login, name, password_file } => {
            let password = std::fs::read_to_string(&password_file)
                .with_context(|| format!("cannot read {}", password_file.display()))?;
            let svc = Service::new(store.open()?, "cli");
            svc.create_operator(&operator(), &login, &name, password.trim_end_matches(['\n', '\r']))
                .map_err(describe)?;
            eprintln!(
                "運営者 {login} を作成しました（管理者トークンは失効しました）。初回ログイン時に本人がパスワードを決め、認証アプリを登録します。"
            );
            Ok(())
        }
        UserCommand::Disable { store, login } => {
            let svc = Service::new(store.open()?, "cli");
            svc.set_user_disabled(&operator(), &login, true).map_err(describe)?;
            eprintln!("利用者 {login} を無効にしました（すべてのセッションを終了しました）");
            Ok(())
        }
        UserCommand::Enable { store, login } => {
            let svc = Service::new(store.open()?, "cli");
            svc.set_user_disabled(&operator(), &login, false).map_err(describe)?;
            eprintln!("利用者 {login} を有効にしました");
            Ok(())
        }
        UserCommand::ResetPassword { store, login, password_file } => {
            let password = std::fs::read_to_string(&password_file)
                .with_context(|| format!("cannot read {}", password_file.display()))?;
            let svc = Service::new(store.open()?, "cli");
            svc.reset_user_password(&operator(), &login, password.trim_end_matches(['\n', '\r'])).map_err(describe)?;
            eprintln!("利用者 {login} のパスワードを再設定しました（すべてのセッションを終了しました）");
            Ok(())
        }
        UserCommand::ResetSecondFactor { store, login } => {
            let svc = Service::new(store.open()?, "cli");
            svc.reset_user_second_factor(&operator(), &login).map_err(describe)?;
            eprintln!("利用者 {login} の二要素認証を初期化しました。次回ログイン時に本人が認証アプリを登録します。");
            Ok(())
        }
        UserCommand::RevokeSessions { store, login } => {
            let svc = Service::new(store.open()?, "cli");
            svc.revoke_user_sessions(&operator(), &login).map_err(describe)?;
            eprintln!("利用者 {login} のすべてのセッションを終了しました");
            Ok(())
        }
        UserCommand::List { store } => {
            for u in store.open()?.read(|r| r.users())? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    u.login,
                    u.profession,
                    u.facilities.join(","),
                    u.name,
                    if u.disabled { "disabled" } else { "active" }
                );
            }
            Ok(())
        }
    }
}

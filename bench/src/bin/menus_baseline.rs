//! The floor under `GET /menus`: a minimal actix-web server that answers
//! `GET /menus` with the bytes in `BODY_FILE` (a saved response of the real
//! endpoint), on `BIND_ADDR` with `HTTP_WORKERS` workers. What the real
//! service adds on top (routing table, middleware, the menu read) is the
//! difference between the two.

use actix_web::{App, HttpResponse, HttpServer, web};
use coffee_bench::env_or;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let body = web::Bytes::from(std::fs::read(std::env::var("BODY_FILE")?)?);
    let bind: String = env_or("BIND_ADDR", "127.0.0.1:18200".to_owned());
    let workers: usize = env_or(
        "HTTP_WORKERS",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    );
    HttpServer::new(move || {
        let body = body.clone();
        App::new().route(
            "/menus",
            web::get().to(move || {
                let body = body.clone();
                async move { HttpResponse::Ok().content_type("application/json").body(body) }
            }),
        )
    })
    .workers(workers)
    .bind(bind)?
    .run()
    .await?;
    Ok(())
}

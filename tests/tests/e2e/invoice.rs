//! The invoice PDF end to end (issue 14 part 2): an order completed on `orders dev` gets
//! `NNNNNN-invoice.pdf` beside the JSON invoice, served as `application/pdf` by the
//! embedded backend and, on AWS (moto), through a redirect to a presigned S3 URL that
//! carries the configured expiry.

use std::time::Duration;

use e2e::{
    TestApp,
    audit::{aws_prefix, bootstrap_aws, document_names},
    get_url, moto, wait_for,
};
use serde_json::json;

const PIPELINE_TIMEOUT: Duration = Duration::from_secs(60);
const DESCRIPTION: &str = "Café añejo — pedido nº 7";
const PDF: &str = "000003-invoice.pdf";

/// Places, starts and completes `order_id`; waits for its invoice PDF to be listed.
async fn complete_and_wait_for_the_pdf(app: &TestApp, order_id: &str) {
    app.post(
        "/orders",
        json!({"orderId": order_id, "description": DESCRIPTION, "deliveryDate": "2026-12-24"}),
    )
    .await
    .expect_status(201);
    for step in ["start", "complete"] {
        app.post(&format!("/orders/{order_id}/{step}"), json!({}))
            .await
            .expect_status(200);
    }
    wait_for(PIPELINE_TIMEOUT, "the invoice PDF", || async {
        document_names(app, order_id)
            .await
            .contains(&PDF.to_owned())
            .then_some(())
    })
    .await;
}

/// The PDF's text as a PDF reader extracts it.
fn pdf_text(pdf: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(pdf).expect("a valid PDF");
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    doc.extract_text(&pages).expect("extractable text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_order_has_an_invoice_pdf_served_as_application_pdf() {
    let app = TestApp::spawn();
    complete_and_wait_for_the_pdf(&app, "PDF-1").await;
    let r = app
        .get(&format!("/orders/PDF-1/documents/{PDF}"))
        .await
        .expect_status(200);
    assert_eq!(r.header("content-type"), Some("application/pdf"));
    let text = pdf_text(&r.body);
    let completed = &app.events("PDF-1").await[2];
    for field in [
        "PDF-1",
        DESCRIPTION,
        "2026-12-24",
        completed["hash"].as_str().expect("a hash"),
    ] {
        assert!(
            text.contains(field),
            "{field:?} not in the PDF's text:\n{text}"
        );
    }
    // The JSON invoice is still there, and a missing document is the API's 404 problem.
    assert!(
        document_names(&app, "PDF-1")
            .await
            .contains(&"000003-invoice.json".to_owned())
    );
    let missing = app.get("/orders/PDF-1/documents/000009-invoice.pdf").await;
    missing.expect_status(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_aws_the_document_route_redirects_to_a_presigned_s3_url_with_the_configured_expiry() {
    let prefix = aws_prefix();
    let env = moto::env(&prefix);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    bootstrap_aws(&env);
    let app = TestApp::spawn_with(
        &[
            "--backend",
            "aws",
            "--endpoint",
            moto::endpoint(),
            "--document-link-expiry",
            "2",
        ],
        &env,
    );
    complete_and_wait_for_the_pdf(&app, "PDF-AWS-1").await;

    let r = app
        .get(&format!("/orders/PDF-AWS-1/documents/{PDF}"))
        .await
        .expect_status(307);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.body.is_empty(),
        "the document does not pass through the API"
    );
    let location = r.header("location").expect("a Location").to_owned();
    assert!(
        location.starts_with(&format!(
            "{}/{prefix}ordersource-documents/orders/PDF-AWS-1/{PDF}?",
            moto::endpoint()
        )),
        "{location}"
    );
    // A SigV4 query-signed GET, valid for the 2 seconds configured.
    for part in ["X-Amz-Expires=2&", "X-Amz-Signature=", "X-Amz-Date="] {
        assert!(location.contains(part), "{part} not in {location}");
    }
    let pdf = get_url(&location).await.expect_status(200);
    // The object was written with its content type, which S3 serves.
    assert_eq!(pdf.header("content-type"), Some("application/pdf"));
    assert!(pdf_text(&pdf.body).contains(DESCRIPTION));

    // A missing document is the API's own 404, not a redirect to S3's error.
    app.get("/orders/PDF-AWS-1/documents/000009-invoice.pdf")
        .await
        .expect_status(404);
}

#[test]
fn a_document_link_expiry_s3_would_not_sign_is_refused_at_startup_naming_the_flag() {
    for bad in ["0", "604801", "15m"] {
        let out = std::process::Command::new(e2e::orders_bin())
            .args([
                "dev",
                "--listen",
                "127.0.0.1:0",
                "--document-link-expiry",
                bad,
            ])
            .output()
            .expect("orders runs");
        assert!(!out.status.success(), "{bad}: started anyway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--document-link-expiry")
                && stderr.contains("whole number of seconds from 1 to 604800"),
            "{bad}: {stderr}"
        );
    }
}

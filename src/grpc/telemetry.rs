//! `TelemetryService`: latest values and range queries, the gRPC edge of
//! [`crate::telemetry::Telemetry`].

use std::pin::Pin;

use hazardwatch_proto::pb;
use hazardwatch_proto::pb::telemetry_service_server::TelemetryService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::access::caller;
use super::status::IntoStatus;
use crate::telemetry::Telemetry;

/// Readings per streamed page.
const PAGE: usize = 10_000;

type QueryStream = Pin<Box<dyn Stream<Item = Result<pb::QueryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl TelemetryService for Telemetry {
    async fn latest(
        &self,
        request: Request<pb::LatestRequest>,
    ) -> Result<Response<pb::LatestResponse>, Status> {
        let caller = caller(&request)?;
        let readings = self
            .latest_values(&caller, &request.into_inner().points)
            .into_status()?;
        Ok(Response::new(pb::LatestResponse { readings }))
    }

    type QueryStream = QueryStream;

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<QueryStream>, Status> {
        let caller = caller(&request)?;
        let req = request.into_inner();
        let readings = self
            .readings(&caller, &req.points, req.from_ms, req.to_ms)
            .await
            .into_status()?;
        let mut readings = readings.into_iter().peekable();
        let mut pages = Vec::new();
        while readings.peek().is_some() {
            let page = readings.by_ref().take(PAGE).collect();
            pages.push(Ok(pb::QueryResponse { readings: page }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(pages))))
    }
}

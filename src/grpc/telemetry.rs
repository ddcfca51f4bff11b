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
        let answer = self
            .query(
                &caller,
                &req.points,
                (req.from_ms, req.to_ms),
                req.max_points as usize,
            )
            .await
            .into_status()?;
        // Pages are made as the client takes them: a slow client holds the
        // compact answer, never the whole answer in wire form.
        let pages = answer.map(|readings| Ok(pb::QueryResponse { readings }));
        Ok(Response::new(Box::pin(tokio_stream::iter(pages))))
    }
}

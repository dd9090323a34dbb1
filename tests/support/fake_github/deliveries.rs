use super::*;

impl Model {
    // -- deliveries ---------------------------------------------------------

    pub(super) fn add_delivery(&mut self, new: NewDelivery) -> Delivery {
        let id = self.next_id();
        let status = new
            .status
            .unwrap_or_else(|| delivery_status(new.status_code));
        let delivered_at = new.delivered_at.unwrap_or_else(|| {
            let age =
                chrono::Duration::seconds(i64::try_from(new.age_secs).unwrap_or(i64::MAX / 2));
            Utc::now() - age
        });
        let delivery = Delivery {
            id,
            guid: new.guid.unwrap_or_else(random_guid),
            delivered_at,
            redelivery: new.redelivery,
            duration: new.duration,
            status,
            status_code: new.status_code,
            event: new.event,
            action: new.action,
            installation_id: new.installation_id,
            repository_id: new.repository_id,
            payload: new.payload,
        };
        self.deliveries.push(delivery.clone());
        delivery
    }

    pub(super) fn deliveries_newest_first(&mut self) -> Vec<Delivery> {
        self.flush_redeliveries();
        let mut list = self.deliveries.clone();
        list.sort_by(|a, b| b.delivered_at.cmp(&a.delivered_at).then(b.id.cmp(&a.id)));
        list
    }

    /// Records a redelivery request. As on GitHub, the redelivery happens
    /// afterwards: its outcome is listed as a new delivery with the same
    /// GUID once [`REDELIVERY_DELAY`] has passed. Deliveries older than
    /// GitHub keeps them for redelivery are refused.
    pub(super) fn redeliver(&mut self, delivery_id: u64) -> Result<(), RedeliverRefusal> {
        let original = self
            .deliveries
            .iter()
            .find(|d| d.id == delivery_id)
            .ok_or(RedeliverRefusal::NotFound)?
            .clone();
        if Utc::now() - original.delivered_at > REDELIVERY_WINDOW {
            return Err(RedeliverRefusal::TooOld);
        }
        self.redeliveries.push(RedeliveryAttempt {
            delivery_id,
            guid: original.guid.clone(),
            received_at: Instant::now(),
        });
        let outcome = NewDelivery {
            guid: Some(original.guid),
            event: original.event,
            action: original.action,
            status_code: self.redelivery_status_code,
            status: None,
            installation_id: original.installation_id,
            repository_id: original.repository_id,
            redelivery: true,
            delivered_at: None,
            age_secs: 0,
            duration: 0.05,
            payload: original.payload,
        };
        self.scheduled_redeliveries
            .push((Instant::now() + REDELIVERY_DELAY, outcome));
        Ok(())
    }

    /// Lists the redeliveries whose time has come.
    pub(super) fn flush_redeliveries(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled_redeliveries)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.scheduled_redeliveries = later;
        for (_, outcome) in due {
            self.add_delivery(outcome);
        }
    }
}

/// GitHub redelivers only deliveries of the past 3 days.
pub(super) const REDELIVERY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::days(3);
/// How long after a redelivery request its outcome is listed.
pub(super) const REDELIVERY_DELAY: Duration = Duration::from_millis(150);

pub(super) enum RedeliverRefusal {
    NotFound,
    TooOld,
}

pub(super) fn delivery_status(status_code: u16) -> String {
    match status_code {
        200..=299 => "OK".to_owned(),
        0 => "failed to connect to host".to_owned(),
        code => format!("Invalid HTTP Response: {code}"),
    }
}

pub(super) fn list_deliveries(call: &Call<'_>) -> Reply {
    let per_page = Pagination::from_query(call).per_page;
    let redelivery = match call.query("redelivery") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    let all: Vec<Delivery> = call
        .shared
        .model()
        .deliveries_newest_first()
        .into_iter()
        .filter(|d| redelivery.is_none_or(|r| d.redelivery == r))
        .collect();
    // The cursor names the first delivery of the page (`v1_{id}`).
    let start = match call.query("cursor") {
        None => 0,
        Some(cursor) => {
            let position = cursor
                .strip_prefix("v1_")
                .and_then(|id| id.parse::<u64>().ok())
                .and_then(|id| all.iter().position(|d| d.id == id));
            match position {
                Some(position) => position,
                None => {
                    return Reply::error(
                        StatusCode::BAD_REQUEST,
                        "Invalid cursor",
                        "https://docs.github.com/rest/apps/webhooks#list-deliveries-for-an-app-webhook",
                    );
                }
            }
        }
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(per_page)
        .map(render::delivery)
        .collect();
    let reply = Reply::json(StatusCode::OK, Value::Array(page));
    match all.get(start + per_page) {
        Some(next) => {
            let query = with_param(&call.query, "cursor", &format!("v1_{}", next.id));
            reply.header(
                "link",
                format!(
                    "<{}/app/hook/deliveries?{query}>; rel=\"next\"",
                    call.urls.api
                ),
            )
        }
        None => reply,
    }
}

pub(super) fn get_delivery(call: &Call<'_>, id: u64, docs: &str) -> Reply {
    let mut model = call.shared.model();
    model.flush_redeliveries();
    match model.deliveries.iter().find(|d| d.id == id) {
        Some(d) => Reply::json(StatusCode::OK, render::delivery_detail(&call.urls, d)),
        None => Reply::not_found(docs),
    }
}

pub(super) fn redeliver(call: &Call<'_>, id: u64, docs: &str) -> Reply {
    match call.shared.model().redeliver(id) {
        Ok(()) => Reply::json(StatusCode::ACCEPTED, json!({})),
        Err(RedeliverRefusal::NotFound) => Reply::not_found(docs),
        Err(RedeliverRefusal::TooOld) => Reply::json(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "message": "Validation Failed",
                "errors": [{
                    "resource": "HookDelivery",
                    "code": "custom",
                    "message": "Deliveries older than 3 days cannot be redelivered",
                }],
                "documentation_url": docs,
                "status": "422",
            }),
        ),
    }
}

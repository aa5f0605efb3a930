//! SQS queues subscribed to an SNS topic on moto, as the template subscribes the reallocation queue.

use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::json;

use super::moto::{unique_name, Moto};

/// A queue's URL (to receive) and ARN (as Lambda's event source sees it).
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// A new queue subscribed to `topic_arn`, filtered on the `event_type` message attribute; `raw` is
/// SNS's RawMessageDelivery (the body is the message itself, not SNS's JSON envelope).
pub async fn subscribed_queue(moto: &Moto, topic_arn: &str, event_type: &str, raw: bool) -> Queue {
    subscribe_queue(moto, topic_arn, Some(event_type), raw).await
}

/// A new queue subscribed to every message of `topic_arn`, with raw delivery: an observer.
pub async fn observer_queue(moto: &Moto, topic_arn: &str) -> Queue {
    subscribe_queue(moto, topic_arn, None, true).await
}

/// A new queue subscribed to `topic_arn`, filtered on `event_type` if given; `raw` as above.
pub async fn subscribe_queue(
    moto: &Moto,
    topic_arn: &str,
    event_type: Option<&str>,
    raw: bool,
) -> Queue {
    let sqs = aws_sdk_sqs::Client::new(moto.sdk_config());
    let url = sqs
        .create_queue()
        .queue_name(unique_name(event_type.unwrap_or("every-event")))
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    let mut subscription = aws_sdk_sns::Client::new(moto.sdk_config())
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(&arn)
        .attributes("RawMessageDelivery", raw.to_string());
    if let Some(event_type) = event_type {
        subscription = subscription
            .attributes("FilterPolicyScope", "MessageAttributes")
            .attributes(
                "FilterPolicy",
                json!({ "event_type": [event_type] }).to_string(),
            );
    }
    subscription.send().await.expect("subscribe");
    Queue { url, arn }
}

/// Every message waiting in the queue (moto delivers synchronously), deleted.
pub async fn drain(moto: &Moto, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = aws_sdk_sqs::Client::new(moto.sdk_config());
    let mut messages = Vec::new();
    loop {
        let received = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let batch = received.messages().to_vec();
        if batch.is_empty() {
            return messages;
        }
        for message in &batch {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        messages.extend(batch);
    }
}

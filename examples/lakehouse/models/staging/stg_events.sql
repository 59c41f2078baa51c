-- event_time lets dbt filter this model per batch when a microbatch model refs it.
{{ config(event_time='event_at') }}

select
    event_id,
    customer_id,
    event_type,
    cast(event_at as timestamp) as event_at
from {{ ref('raw_events') }}

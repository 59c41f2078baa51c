-- Microbatch: dbt runs one query per month between `begin` and now, each reading only
-- that month of stg_events (stg_events has event_time configured), and replaces only
-- that month here. Rows are one per day, customer and event type; event_at is the day.
-- dbt-postgres runs microbatch as a merge and needs a unique_key; dbt-duckdb refuses one.
{%- set key = ['event_at', 'customer_id', 'event_type'] if target.type == 'postgres' else none %}
{{
    config(
        materialized='incremental',
        incremental_strategy='microbatch',
        event_time='event_at',
        begin='2026-01-01',
        batch_size='month',
        unique_key=key,
        tags=['daily', 'events'],
        meta={'owner': 'product'},
    )
}}

select
    date_trunc('day', event_at) as event_at,
    cast(event_at as date) as event_date,
    customer_id,
    event_type,
    count(*) as event_count
from {{ ref('stg_events') }}
group by 1, 2, 3, 4

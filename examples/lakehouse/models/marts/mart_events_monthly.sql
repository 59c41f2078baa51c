{{ config(tags=['events']) }}

select
    cast(date_trunc('month', event_date) as date) as month,
    event_type,
    sum(event_count) as event_count,
    count(distinct customer_id) as active_customers
from {{ ref('int_events_daily') }}
group by 1, 2

-- Joins two intermediates: customer order history and daily event counts.
with events as (
    select
        customer_id,
        sum(event_count) as event_count,
        sum(event_count) filter (where event_type = 'checkout') as checkout_count,
        max(event_date) as last_event_date
    from {{ ref('int_events_daily') }}
    group by customer_id
)

select
    co.customer_id,
    co.order_count,
    coalesce(e.event_count, 0) as event_count,
    coalesce(e.checkout_count, 0) as checkout_count,
    e.last_event_date,
    case
        when coalesce(e.event_count, 0) = 0 then null
        else round(cast(co.order_count as numeric) / e.event_count, 4)
    end as orders_per_event
from {{ ref('int_customer_orders') }} as co
left join events as e using (customer_id)

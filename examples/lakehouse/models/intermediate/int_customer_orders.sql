select
    c.customer_id,
    c.customer_name,
    c.country_code,
    c.signed_up_at,
    count(o.order_id) as order_count,
    count(o.order_id) filter (where not o.is_returned) as kept_order_count,
    min(o.order_date) as first_order_date,
    max(o.order_date) as last_order_date,
    coalesce(sum(o.amount) filter (where not o.is_returned), 0) as net_amount
from {{ ref('stg_customers') }} as c
left join {{ ref('int_orders') }} as o using (customer_id)
group by 1, 2, 3, 4

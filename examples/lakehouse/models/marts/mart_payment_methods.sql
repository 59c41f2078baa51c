{{ config(tags=['finance']) }}

select
    p.payment_method,
    count(*) as payment_count,
    count(distinct p.order_id) as order_count,
    sum(p.amount) as amount,
    sum(p.amount) filter (where o.is_returned) as returned_amount
from {{ ref('stg_payments') }} as p
join {{ ref('int_orders') }} as o using (order_id)
group by p.payment_method

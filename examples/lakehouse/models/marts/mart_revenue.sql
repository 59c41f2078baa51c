-- Daily revenue. Incremental (delete+insert on order_date): a normal run only recomputes
-- the last three days already present plus anything newer. Marked heavy for rescue policies.
{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='order_date',
        on_schema_change='fail',
        tags=['finance', 'daily'],
        meta={'owner': 'finance', 'rescue': {'heavy': true}},
    )
}}

select
    order_date,
    count(*) as order_count,
    count(*) filter (where is_returned) as returned_order_count,
    sum(amount) as gross_revenue,
    sum(amount) filter (where is_returned) as returned_revenue,
    sum(amount) filter (where not is_returned) as net_revenue,
    sum(coupon_amount + gift_card_amount) as voucher_revenue
from {{ ref('int_orders') }}
{% if is_incremental() %}
where order_date >= (select max(order_date) - interval '3 days' from {{ this }})
{% endif %}
group by order_date

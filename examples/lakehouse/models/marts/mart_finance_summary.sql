-- Monthly finance summary: revenue from mart_revenue (a mart on a mart) and the
-- payment mix from int_orders.
{{ config(tags=['finance']) }}

with revenue as (
    select
        date_trunc('month', order_date) as month,
        sum(order_count) as order_count,
        sum(gross_revenue) as gross_revenue,
        sum(coalesce(net_revenue, 0)) as net_revenue
    from {{ ref('mart_revenue') }}
    group by 1
),

payment_mix as (
    select
        date_trunc('month', order_date) as month,
        sum(credit_card_amount) as credit_card_amount,
        sum(bank_transfer_amount) as bank_transfer_amount,
        sum(coupon_amount) as coupon_amount,
        sum(gift_card_amount) as gift_card_amount
    from {{ ref('int_orders') }}
    group by 1
)

select
    cast(r.month as date) as month,
    r.order_count,
    r.gross_revenue,
    r.net_revenue,
    p.credit_card_amount,
    p.bank_transfer_amount,
    p.coupon_amount,
    p.gift_card_amount
from revenue as r
left join payment_mix as p using (month)

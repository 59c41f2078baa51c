{{ config(meta={'contains_pii': true, 'owner': 'crm'}) }}

select
    c.customer_id,
    c.customer_name,
    c.email,
    c.country_code,
    c.signed_up_at,
    co.order_count,
    co.first_order_date,
    co.last_order_date,
    coalesce(ltv.lifetime_value, 0) as lifetime_value,
    coalesce(ltv.value_tier, 'bronze') as value_tier
from {{ ref('stg_customers') }} as c
left join {{ ref('int_customer_orders') }} as co using (customer_id)
left join {{ ref('mart_customer_ltv') }} as ltv using (customer_id)

{{ config(meta={'contains_pii': true, 'owner': 'crm'}) }}

select
    id as customer_id,
    first_name,
    last_name,
    first_name || ' ' || last_name as customer_name,
    lower(email) as email,
    upper(country) as country_code,
    cast(signed_up_at as date) as signed_up_at
from {{ ref('raw_customers') }}

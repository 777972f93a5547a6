"""Smart-charging delivery: turns the balancer's decisions into profiles chargers obey, in both OCPP versions."""

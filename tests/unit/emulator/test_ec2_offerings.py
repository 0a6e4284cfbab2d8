"""EC2's instance-type offerings are read when first asked for, and answer as moto's did."""

from __future__ import annotations

import boto3
from moto import mock_aws

from diskport_emulator.services import ec2_offerings, install_strict_services


def test_the_offerings_are_not_held_until_an_ec2_call_needs_them_and_then_answer_as_before() -> None:
    install_strict_services()
    from moto.ec2.models import instance_types

    offerings = instance_types.INSTANCE_TYPE_OFFERINGS
    assert isinstance(offerings, ec2_offerings.OfferingsReadOnFirstUse)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="x")
        zones = ec2.describe_instance_type_offerings(LocationType="availability-zone")["InstanceTypeOfferings"]
        launched = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro")
    assert offerings.read
    assert {offering["Location"] for offering in zones} >= {"us-east-1a", "us-east-1b"}
    assert all(offering["LocationType"] == "availability-zone" for offering in zones)
    assert launched["Instances"][0]["InstanceType"] == "t3.micro"

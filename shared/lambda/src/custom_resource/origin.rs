//! Where an event comes from and where its answer goes: the checks every custom-resource event
//! passes before anything is done with it, and the one PUT of the answer to its `ResponseURL`.

use std::net::Ipv4Addr;
use std::time::Duration;

use lambda_aws::https::{self, Endpoint};
use lambda_aws::Method;
use lti_storage::Error;
use tokio::time::timeout;

use super::TEST_ENDPOINT_VAR;

/// The checks an event passes before anything is done with it: `ResponseURL` is an https URL
/// (port 443, no user info, no IP address) to CloudFormation's response bucket of the
/// function's own region, and `StackId` is a stack of the function's own partition, region and
/// account. `Ok`: where to answer. `Err`: which check failed, never the value given.
pub(super) fn check_origin(
    response_url: &str,
    stack_id: &str,
    function_arn: &str,
) -> Result<ResponseUrl, String> {
    let home = Home::of_function(function_arn).ok_or(
        "the invoked function's ARN is not a Lambda function ARN, so the event's stack cannot \
         be checked",
    )?;
    let url = ResponseUrl::parse(response_url, &home)?;
    let stack_prefix = format!(
        "arn:{}:cloudformation:{}:{}:stack/",
        home.partition, home.region, home.account
    );
    let stack = stack_id.strip_prefix(&stack_prefix).unwrap_or_default();
    if !stack
        .split_once('/')
        .is_some_and(|(name, id)| !name.is_empty() && !id.is_empty())
    {
        return Err(format!(
            "StackId must be a stack of the function's own partition, region and account \
             ({stack_prefix}<name>/<id>)"
        ));
    }
    Ok(url)
}

/// Where the function runs: the partition, region and account of its ARN.
struct Home<'a> {
    partition: &'a str,
    region: &'a str,
    account: &'a str,
}

impl<'a> Home<'a> {
    /// From `arn:<partition>:lambda:<region>:<account>:function:<name>[:<version or alias>]`.
    fn of_function(arn: &'a str) -> Option<Home<'a>> {
        let parts: Vec<&str> = arn.split(':').collect();
        let ["arn", partition, "lambda", region, account, "function", name, ref qualifier @ ..] =
            *parts.as_slice()
        else {
            return None;
        };
        // The region becomes part of a host name: letters, digits and dashes only.
        let label = |text: &str| {
            !text.is_empty()
                && text
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
        };
        let valid = label(partition)
            && label(region)
            && account.len() == 12
            && account.bytes().all(|byte| byte.is_ascii_digit())
            && !name.is_empty()
            && qualifier.len() <= 1;
        valid.then_some(Home {
            partition,
            region,
            account,
        })
    }

    /// The hosts of CloudFormation's response bucket of this region
    /// (`cloudformation-custom-resource-response-<region without dashes>`) that its pre-signed
    /// URLs use: S3's regional endpoint with a dot or, in older regions, a dash, and in the
    /// `aws` partition S3's global endpoint (us-east-1's URLs use it; it reaches the bucket of
    /// any region). `None`: a partition whose domain is not known here.
    fn response_hosts(&self) -> Option<Vec<String>> {
        let domain = match self.partition {
            "aws" | "aws-us-gov" => "amazonaws.com",
            "aws-cn" => "amazonaws.com.cn",
            _ => return None,
        };
        let bucket = format!(
            "cloudformation-custom-resource-response-{}",
            self.region.replace('-', "")
        );
        let region = self.region;
        let mut hosts = vec![
            format!("{bucket}.s3.{region}.{domain}"),
            format!("{bucket}.s3-{region}.{domain}"),
        ];
        if self.partition == "aws" {
            hosts.push(format!("{bucket}.s3.{domain}"));
        }
        Some(hosts)
    }
}

/// Where the answer goes: the event's pre-signed URL, split for one request.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ResponseUrl {
    /// A host of CloudFormation's response bucket; the port is https's.
    pub(super) host: String,
    /// Path and query exactly as given: the query holds the signature.
    pub(super) target: String,
}

impl ResponseUrl {
    /// `url`, if it is an https URL to CloudFormation's response bucket of `home`'s region.
    fn parse(url: &str, home: &Home) -> Result<ResponseUrl, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or("ResponseURL must be an https URL")?;
        if url
            .bytes()
            .any(|byte| byte.is_ascii_whitespace() || byte.is_ascii_control())
        {
            return Err("ResponseURL must hold no spaces or control characters".into());
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err("ResponseURL must hold no user info".into());
        }
        if authority.starts_with('[') {
            return Err("ResponseURL's host must be a name, not an IP address".into());
        }
        let host = match authority.rsplit_once(':') {
            Some((host, port)) if port.parse() == Ok(443u16) => host,
            Some(_) => return Err("ResponseURL must be on port 443".into()),
            None => authority,
        };
        if host.parse::<Ipv4Addr>().is_ok() {
            return Err("ResponseURL's host must be a name, not an IP address".into());
        }
        let hosts = home.response_hosts().ok_or_else(|| {
            format!(
                "the function's partition {} has no known CloudFormation response bucket",
                home.partition
            )
        })?;
        if !hosts.iter().any(|known| known.eq_ignore_ascii_case(host)) {
            return Err(format!(
                "ResponseURL's host must be CloudFormation's response bucket of the function's \
                 region, one of {}",
                hosts.join(", ")
            ));
        }
        let target = match target.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if target.is_empty() => "/".to_owned(),
            None => target.to_owned(),
        };
        Ok(ResponseUrl {
            host: host.to_owned(),
            target,
        })
    }

    /// PUTs `document` within `limit`, to the URL's host or else `test_endpoint`; only a 2xx
    /// status is an answer delivered.
    pub(super) async fn put(
        &self,
        document: Vec<u8>,
        test_endpoint: Option<&Endpoint>,
        limit: Duration,
    ) -> Result<(), Error> {
        let destination = match test_endpoint {
            Some(endpoint) => format!("{} ({TEST_ENDPOINT_VAR})", endpoint.authority()),
            None => self.host.clone(),
        };
        let failed = |problem: String| {
            Error::unavailable(format!(
                "could not deliver the answer to CloudFormation (a PUT to {destination}): \
                 {problem}. A function in a VPC reaches it through a NAT gateway or an S3 \
                 gateway endpoint"
            ))
        };
        let endpoint = match test_endpoint {
            Some(endpoint) => endpoint.clone(),
            None => Endpoint::https(self.host.clone()),
        };
        // No Content-Type: the URL's signature was made for none.
        let headers = [("host", self.host.clone())];
        let exchange = https::status_of(&endpoint, Method::PUT, &self.target, &headers, document);
        match timeout(limit, exchange).await {
            Err(_) => Err(failed(format!("no answer within {} ms", limit.as_millis()))),
            Ok(Err(err)) => Err(failed(err.to_string())),
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(failed(format!("it answered HTTP {status}"))),
        }
    }
}
